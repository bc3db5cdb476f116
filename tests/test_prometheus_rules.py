"""The Prometheus alerting rules (monitoring/prometheus/alerts.yml): promtool checks them and runs their unit
tests; a live watchdog's /metrics passes `promtool check metrics`; a real Prometheus scraping the shipped
fleet loads every rule healthy, and its alerts page is what the README shows."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

from tests.browser import screenshot
from tests.harness import ROOT, free_port, wait_until

RULES = ROOT / "monitoring" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "alerts_test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _need(binary: str) -> None:
    if not shutil.which(binary):
        pytest.skip(f"{binary} is missing: Debian's prometheus package brings it (`make test` installs it)")


def promtool(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    _need(PROMTOOL)
    result = subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60)
    print(f"$ promtool {' '.join(str(a) for a in args)}\n{result.stdout}{result.stderr}")
    return result


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_the_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert result.returncode == 0 and f"SUCCESS: {len(rules)} rules found" in result.stdout, result


def test_every_rule_has_a_promtool_unit_test_and_they_pass():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result
    names = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    fired = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == names, f"rules without a test that fires them: {sorted(names - fired)}"


@pytest.mark.processes
@pytest.mark.process_faults
def test_a_live_watchdogs_metrics_pass_promtool_check_metrics(shipped):
    text = get(f"http://{shipped.config.watchdog.listen}/metrics")
    assert "botfleet_bot_up{" in text
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result


@pytest.mark.processes
@pytest.mark.process_faults
def test_a_real_prometheus_loads_every_rule_healthy_and_shows_them(shipped, tmp_path, browser_page):
    _need(PROMETHEUS)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "botfleet", "static_configs": [{"targets": [shipped.config.watchdog.listen]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def api(path):
            try:
                return json.loads(get(base + path))["data"]
            except OSError:
                return None

        def target_up():
            targets = api("/api/v1/targets")
            return targets and [t["health"] for t in targets["activeTargets"]] == ["up"]

        wait_until(target_up, 60, lambda: f"Prometheus to scrape the watchdog: {api('/api/v1/targets')}")

        def evaluated_rules():
            data = api("/api/v1/rules")
            rules = [rule for group in (data or {}).get("groups", []) for rule in group["rules"]]
            return rules if rules and all(rule["lastEvaluation"] > "0001-01-01T00:00:00Z" for rule in rules) else None

        rules = wait_until(evaluated_rules, 60, lambda: f"the rules to be evaluated: {api('/api/v1/rules')}")
        expected = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
        assert {rule["name"] for rule in rules} == expected
        assert {rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in rules} == {
            name: ("ok", "") for name in expected}
        # Debian builds Prometheus without its React UI (/alerts answers 404): the classic UI is what it serves.
        page = "/classic/alerts" if _status(base + "/alerts") == 404 else "/alerts"
        browser_page.goto(base + page)
        browser_page.wait_for_selector("text=BotfleetBotDown")
        shot = screenshot(browser_page, tmp_path, "prometheus-alerts")
        assert shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code

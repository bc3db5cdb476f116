"""Registrations of this host's processes whose pid supervisord no longer runs: dead now, not after a timeout.

They are retired at once, and the tickets they held are made claimable at once. A ticket whose row another
session has locked (a person's transaction in psql) is not waited for: the check would stop there, and
with it the checks of every other bot and the watchdog's own heartbeat. It is freed at a later check, once
the lock is gone, or by its lease running out, whichever comes first.
"""

import logging

from common.store import sql

log = logging.getLogger("botfleet.watchdog")


class Retirements:
    def __init__(self, host: str):
        self.host = host
        self.unfreed: dict[str, set] = {}  # bot -> retired instance ids whose tickets a lock kept from being freed

    def retire(self, conn, bot: str, gone_pids: list) -> None:
        """Retire `bot`'s registrations under `gone_pids` and free their tickets; free what a lock held back before."""
        retired = []
        if gone_pids:
            retired = [row["instance_id"] for row in conn.execute(
                sql.RETIRE_PROCESSES_BY_PID, {"bot": bot, "host": self.host, "pids": gone_pids}).fetchall()]
            if retired:
                log.info("bot %s: retired %d registration(s) of pids supervisord no longer runs (%s)",
                         bot, len(retired), gone_pids)
                self.unfreed.setdefault(bot, set()).update(retired)
        owners = self.unfreed.get(bot)
        if not owners:
            return
        row = conn.execute(sql.FREE_TICKETS_OF_RETIRED, {"bot": bot, "owners": sorted(owners)}).fetchone()
        if row["freed"]:
            log.info("bot %s: %d ticket(s) of retired process(es) freed", bot, row["freed"])
        if not row["locked"]:
            del self.unfreed[bot]
        elif retired:  # said once, as they are retired, not at every check while the lock lasts
            log.warning("bot %s: %d ticket(s) of retired process(es) are locked by another session; freed once "
                        "it lets go", bot, row["locked"])

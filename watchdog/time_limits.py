"""How long the watchdog waits for the database and for supervisord.

Each check writes the watchdog's heartbeat as it starts; `botfleet check` and /healthz call the watchdog
stale once no check has started for `stale_after` (4 s as shipped). A check is a few statements per bot
and one supervisord call: bounded as below, a check that meets both a stuck statement and a supervisord
that does not answer still ends within three quarters of `stale_after`, and the next check heartbeats in
time. What a lock keeps from one check (a row a person holds in psql) is done by a later one.
"""

from common.store.connect import SessionTimeouts

# /metrics, /healthz and `botfleet check` read a little and take no row locks: their answer must come before
# the prober gives up (Prometheus's default scrape timeout and the shipped Zabbix items' are 10 s), so that
# it can say the database is slow instead of timing out itself. A table lock (a migration) is waited for briefly.
PROBE_TIMEOUTS = SessionTimeouts(lock_timeout_s=1.0, statement_timeout_s=5.0)


def check_timeouts(settings) -> SessionTimeouts:
    """The check loop's session: a quarter of `stale_after` for any statement (1 s as shipped), an eighth for a
    lock."""
    return SessionTimeouts(lock_timeout_s=settings.stale_after_s / 8, statement_timeout_s=settings.stale_after_s / 4)


def rpc_timeout_s(settings) -> float:
    """One XML-RPC call to this host's supervisord, which answers in milliseconds when it answers at all:
    half of `stale_after`."""
    return settings.stale_after_s / 2

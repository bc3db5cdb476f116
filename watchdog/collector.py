"""Prometheus metrics computed from the database at scrape time.

The watchdog exports what bots recorded (counters, latency histograms), their liveness, the
backlog per state and its own actions. Every query reads small tables or the open-ticket index,
so a scrape stays fast with millions of closed tickets.
"""

import logging

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from common import __version__
from common.status_models.instances import instance_counts
from common.store import sql
from common.store.botstats import COUNTERS, HANDLER_BUCKETS_S, HOP_BUCKETS_S, cumulative
from common.store.connect import connect
from common.store.connections import measure
from watchdog.time_limits import PROBE_TIMEOUTS

log = logging.getLogger("botfleet.watchdog")

BOT_LABELS = ["bot", "metaservice", "ticket_type", "state"]
STATE_LABELS = ["metaservice", "ticket_type", "state"]
COUNTER_HELP = {
    "transitions": "State transitions a bot wrote",
    "handler_failures": "Handler runs that raised or returned no valid outcome",
    "error_tickets": "Error tickets a bot raised for tickets it could not move on",
    "timeouts": "Tickets whose lifetime ran out in a bot's state",
    "reminders": "Acceptance rounds and reminders a bot sent",
    "notifications_rejected": "Messages from other bots a bot could not handle (logged with their sender)",
}
RESTART_REASONS = ["hung", "fatal", "exited", "crash", "operator"]  # README's Monitoring section


class FleetCollector:
    """A prometheus_client collector; `connect` returns a psycopg connection (dict rows). With `fleet_need` (this
    host's, common/store/connections.py), the connection budget too."""

    def __init__(self, connect, leader=lambda: False, stale_after_s=5.0, fleet_need=None):
        self.connect = connect
        self.leader = leader
        self.stale_after_s = stale_after_s  # a verdict this old is no longer a bot's health
        self.fleet_need = fleet_need

    def collect(self):
        info = GaugeMetricFamily("botfleet_build_info", "botfleet version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        up = GaugeMetricFamily("botfleet_database_up", "1 when the watchdog could read the database")
        try:
            with self.connect() as conn:
                families = list(self._from_database(conn))
        except psycopg.Error as exc:
            log.warning("scrape could not read the database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_database(self, conn):
        yield from self._watchdog(conn)
        yield from self._bots(conn)
        yield from self._tickets(conn)
        yield from self._deliveries(conn)
        yield from self._lock(conn)
        yield from self._status_models(conn)
        yield from self._workers(conn)
        if self.fleet_need is not None:
            yield from self._connections(conn)

    def _connections(self, conn):
        """This host's fleet against the server's connections: alert on needed > available (it cannot all
        connect), or needed > 0.8 * available (the warning `botfleet up` gives)."""
        verdict = measure(conn, self.fleet_need)
        for name, help_text, value in (
                ("needed", "Connections this host's fleet holds at most (bots, the API's pools, the watchdog, "
                           "room for commands)", verdict.needed),
                ("available", "Server connections this host's fleet may use: max_connections minus reserved "
                              "slots minus the connections of other hosts and clients", verdict.available),
                ("used_by_others", "Client connections of other hosts and clients on the server",
                 verdict.server.used_by_others),
                ("max", "The server's max_connections", verdict.server.max_connections)):
            gauge = GaugeMetricFamily(f"botfleet_connections_{name}", help_text)
            gauge.add_metric([], value)
            yield gauge

    def _watchdog(self, conn):
        hosts = conn.execute(sql.METRIC_WATCHDOG_HOSTS).fetchall()
        # The fleet is checked as recently as its least recently checked host: a stopped watchdog on one
        # host must not hide behind a live one on another. No value while a host has never been checked.
        last = GaugeMetricFamily("botfleet_watchdog_last_check_timestamp_seconds",
                                 "When the watchdog of every host had last completed a check (the oldest host's newest check)")
        checks = [row["last_check"] for row in hosts]
        if checks and None not in checks:
            last.add_metric([], min(checks))
        yield last
        per_host = GaugeMetricFamily("botfleet_watchdog_host_last_check_timestamp_seconds",
                                     "When a host's watchdog last completed a check", labels=["host"])
        for row in hosts:
            if row["last_check"] is not None:
                per_host.add_metric([row["host"]], row["last_check"])
        yield per_host
        supervisord = GaugeMetricFamily("botfleet_supervisord_up", "1 when a host's supervisord answered its "
                                        "watchdog's last check; 0: its processes run with nothing to restart them",
                                        labels=["host"])
        for row in hosts:
            if row["supervisor_up"] is not None:
                supervisord.add_metric([row["host"]], 1 if row["supervisor_up"] else 0)
        yield supervisord
        leader = GaugeMetricFamily("botfleet_watchdog_leader", "1 when this watchdog holds the fleet-wide lease")
        leader.add_metric([], 1 if self.leader() else 0)
        yield leader
        restarts = CounterMetricFamily(
            "botfleet_watchdog_restarts_total", "Restarts of a bot's processes by reason: hung, fatal and exited "
            "(the watchdog's), crash (supervisord's, after the process died) and operator (after a clean stop)",
            labels=["bot", "reason"])
        for r in conn.execute(sql.METRIC_RESTARTS, {"reasons": RESTART_REASONS}).fetchall():
            restarts.add_metric([r["bot"], r["reason"]], r["restarts"])
        yield restarts
        in_a_row = GaugeMetricFamily("botfleet_bot_restarts_in_a_row", "The watchdog's restarts in a row of a "
                                     "process of the bot on a host (0 once it has run healthy long enough)",
                                     labels=["bot", "host"])
        backoff = GaugeMetricFamily("botfleet_bot_restart_backoff_seconds", "Seconds before the watchdog restarts "
                                    "a process of the bot on a host again (0: it may now)", labels=["bot", "host"])
        for row in conn.execute(sql.RESTART_BACKOFFS).fetchall():
            in_a_row.add_metric([row["bot"], row["host"]], row["restarts_in_a_row"])
            backoff.add_metric([row["bot"], row["host"]], row["backoff_s"])
        yield in_a_row
        yield backoff

    def _bots(self, conn):
        up = GaugeMetricFamily("botfleet_bot_up", "1 when the watchdog of every host that runs the bot found it healthy",
                               labels=BOT_LABELS)
        host_up = GaugeMetricFamily("botfleet_bot_host_up", "1 when this host's watchdog found the bot healthy",
                                    labels=[*BOT_LABELS, "host"])
        disabled = GaugeMetricFamily("botfleet_bot_disabled", "1 when the bot is disabled", labels=BOT_LABELS)
        heartbeat = GaugeMetricFamily("botfleet_bot_last_heartbeat_timestamp_seconds",
                                      "Newest heartbeat of a live process of the bot", labels=BOT_LABELS)
        processes = GaugeMetricFamily("botfleet_bot_processes", "Live registered processes", labels=BOT_LABELS)
        counters = {name: CounterMetricFamily(f"botfleet_{name}", help_text, labels=BOT_LABELS)
                    for name, help_text in COUNTER_HELP.items()}
        hop = HistogramMetricFamily("botfleet_hop_latency_seconds",
                                    "From a ticket entering a state to its bot's handler starting", labels=BOT_LABELS)
        handler = HistogramMetricFamily("botfleet_handler_duration_seconds", "Handler run time", labels=BOT_LABELS)
        for row in conn.execute(sql.METRIC_BOTS, {"stale_after_s": self.stale_after_s}).fetchall():
            labels = [row["name"], row["metaservice"], row["ticket_type"], str(row["state"])]
            verdicts = row["health_by_host"]
            up.add_metric(labels, 1 if verdicts and all(v and v[0] == "healthy" for v in verdicts.values()) else 0)
            for host, verdict in sorted(verdicts.items()):
                host_up.add_metric([*labels, host], 1 if verdict and verdict[0] == "healthy" else 0)
            disabled.add_metric(labels, 0 if row["enabled"] else 1)
            if row["last_heartbeat"] is not None:
                heartbeat.add_metric(labels, row["last_heartbeat"])
            processes.add_metric(labels, row["processes"])
            for name in COUNTERS:
                counters[name].add_metric(labels, row[name] or 0)
            for family, bounds, counts, sum_s in ((hop, HOP_BUCKETS_S, row["hop_buckets"], row["hop_sum_s"]),
                                                  (handler, HANDLER_BUCKETS_S, row["handler_buckets"],
                                                   row["handler_sum_s"])):
                family.add_metric(labels, cumulative(counts or {}, bounds), sum_s or 0.0)
        yield from (up, host_up, disabled, heartbeat, processes, *counters.values(), hop, handler)

    def _deliveries(self, conn):
        """The mail and webhook queues."""
        yield from _queue(conn.execute(sql.MAIL_QUEUE).fetchone(), "mail", "Notifications waiting to be mailed",
                          "mail")
        row = conn.execute(sql.WEBHOOK_QUEUE).fetchone()
        yield from _queue(row, "webhook", "State changes waiting to be POSTed to callback URLs", "webhook")
        failed = GaugeMetricFamily("botfleet_webhook_failed", "Webhooks given up after webhooks.max_tries (or "
                                                              "refused by the receiver), kept for keep_failed")
        failed.add_metric([], row["failed"])
        yield failed

    def _lock(self, conn):
        lock = conn.execute(sql.READ_FLEET_LOCK).fetchone()
        locked = GaugeMetricFamily("botfleet_fleet_lock", "1 for the state the fleet's lock is in",
                                   labels=["state"])
        for state in ("open", "ops_only", "closed"):
            locked.add_metric([state], 1.0 if lock["state"] == state else 0.0)
        yield locked
        # Business time (botfleet_now()), the clock every other timestamp here reads.
        since = GaugeMetricFamily("botfleet_fleet_lock_since_timestamp_seconds",
                                  "When the fleet's lock took the state it is in")
        if lock["set_at"] is not None:
            since.add_metric([], lock["set_at"].timestamp())
        yield since

    def _status_models(self, conn):
        instances = GaugeMetricFamily("botfleet_status_instances", "Instances of a status model (seed 001): open, or "
                                      "how they finished (completed, stopped, timed_out)",
                                      labels=["object", "finish_reason"])
        for row in instance_counts(conn):
            instances.add_metric([row["object_name"], row["finish_reason"]], row["instances"])
        yield instances

    def _workers(self, conn):
        """Seed 002: per external state, the tickets workers hold and how many holds ended unfinished; per
        worker, its last contact (a worker that stops asking shows here before its tickets stall)."""
        held = GaugeMetricFamily("botfleet_worker_tickets_held", "Tickets of a state held by external workers",
                                 labels=STATE_LABELS)
        abandoned = CounterMetricFamily("botfleet_worker_tickets_abandoned", "Holds a worker gave up by asking for "
                                        "more before finishing", labels=STATE_LABELS)
        stalled = CounterMetricFamily("botfleet_worker_tickets_stalled", "Holds taken back from a worker silent "
                                      "past the state's stall_timeout", labels=STATE_LABELS)
        for row in conn.execute(sql.METRIC_WORKER_STATES).fetchall():
            labels = [row["metaservice"], row["ticket_type"], str(row["state"])]
            held.add_metric(labels, row["held"])
            abandoned.add_metric(labels, row["abandoned"])
            stalled.add_metric(labels, row["stalled"])
        contact = GaugeMetricFamily("botfleet_worker_last_contact_timestamp_seconds",
                                    "When an external worker last called the API", labels=["worker"])
        for row in conn.execute(sql.METRIC_WORKERS).fetchall():
            contact.add_metric([row["name"]], row["last_contact_s"])
        yield from (held, abandoned, stalled, contact)

    def _tickets(self, conn):
        open_tickets = GaugeMetricFamily("botfleet_tickets_open", "Open tickets waiting in a state",
                                         labels=STATE_LABELS)
        oldest = GaugeMetricFamily("botfleet_tickets_oldest_open_timestamp_seconds",
                                   "When the longest-waiting open ticket entered its state", labels=STATE_LABELS)
        due = GaugeMetricFamily("botfleet_tickets_due", "Open tickets of a state due now that no process holds",
                                labels=STATE_LABELS)
        oldest_due = GaugeMetricFamily("botfleet_tickets_oldest_due_timestamp_seconds",
                                       "Since when the longest-waiting due ticket of a state has been due",
                                       labels=STATE_LABELS)
        for row in conn.execute(sql.METRIC_OPEN_TICKETS).fetchall():
            labels = [row["metaservice"], row["ticket_type"], str(row["state"])]
            open_tickets.add_metric(labels, row["open"])
            oldest.add_metric(labels, row["oldest"])
            due.add_metric(labels, row["due"])
            if row["oldest_due"] is not None:
                oldest_due.add_metric(labels, row["oldest_due"])
        yield from (open_tickets, oldest, due, oldest_due)


def registry_for(collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def scrape_text(url) -> str:
    """The exposition text a scrape of a watchdog on this database would return."""
    collector = FleetCollector(lambda: connect(url, autocommit=True, timeouts=PROBE_TIMEOUTS))
    return generate_latest(registry_for(collector)).decode()


def _queue(row, prefix, pending_help, what):
    """The gauges of a delivery queue: pending, pending after a failed try, the oldest pending's time."""
    pending = GaugeMetricFamily(f"botfleet_{prefix}_pending", pending_help)
    pending.add_metric([], row["pending"])
    retrying = GaugeMetricFamily(f"botfleet_{prefix}_retrying", f"Pending {what} that failed at least once")
    retrying.add_metric([], row["retrying"])
    oldest = GaugeMetricFamily(f"botfleet_{prefix}_oldest_pending_timestamp_seconds",
                               f"When the longest-waiting pending {what} was written")
    if row["oldest"] is not None:
        oldest.add_metric([], row["oldest"])
    yield from (pending, retrying, oldest)

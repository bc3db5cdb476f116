"""`botfleet status`: each bot's liveness and counts, and how many tickets wait in each state."""

from common.access.fleet_lock import read_lock
from common.config.names import process_names
from common.fleet import supervisor
from common.store import sql


def collect(conn, config) -> dict:
    states = supervisor.process_states(config.paths.supervisor_socket)
    local = config.local_bots()
    # A config that could not be read knows no bots: they are judged from the database alone, as this host's.
    known = bool(config.bots)
    bots = []
    for row in conn.execute(sql.BOT_STATUS, {"stale_after_s": config.watchdog.stale_after_s}).fetchall():
        names = process_names(row["name"], row["replicas"])
        process_states = [states.get(name) for name in names] if states is not None else []
        bots.append({
            "name": row["name"], "metaservice": row["metaservice"], "ticket_type": row["ticket_type"],
            "state_code": row["state"], "enabled": row["enabled"],
            # As supervisord sees it: one process's state, or the worst of the replicas'; None when
            # supervisord does not run or does not know the bot.
            "state": worst_state(process_states),
            # None where every host runs every bot; else the hosts that do, this one or others.
            "hosts": config.hosts_of(row["name"]) if known else None,
            "on_this_host": row["name"] in local or not known,
            "registered_processes": row["registered_processes"],
            "last_heartbeat_at": row["last_heartbeat_at"],
            "processed": row["processed"], "failed": row["failed"],
            "health": _health(row["health_by_host"]), "health_by_host": row["health_by_host"],
        })
    tickets = []
    for row in conn.execute(sql.TICKET_COUNTS).fetchall():
        tickets.append({**row, "state_name": config.state_name(row["metaservice"], row["ticket_type"], row["state"])})
    watchdog_events = conn.execute(sql.RECENT_WATCHDOG_EVENTS, {"limit": 10}).fetchall()
    restart_backoffs = conn.execute(sql.RESTART_BACKOFFS).fetchall()
    # Without a mail: section nothing mails: mail left pending from a time the fleet did is not news.
    mail = conn.execute(sql.MAIL_QUEUE).fetchone() if config.mail is not None else {"pending": 0, "retrying": 0}
    webhooks = conn.execute(sql.WEBHOOK_QUEUE).fetchone()
    return {"lock": read_lock(conn).__dict__, "bots": bots, "tickets": tickets, "supervisord": states is not None,
            "watchdog_events": watchdog_events, "restart_backoffs": restart_backoffs, "mail": {"pending": mail["pending"], "retrying": mail["retrying"]},
            "webhooks": {key: webhooks[key] for key in ("pending", "retrying", "failed")}}


def _health(by_host) -> str | None:
    """One word for the bot: its health where all its hosts agree, else each host's as health@host."""
    words = {host: verdict[0] if verdict else "-" for host, verdict in sorted(by_host.items())}
    if not words:
        return None
    if len(set(words.values())) == 1:
        return next(iter(words.values()))
    return ",".join(f"{word}@{host}" for host, word in words.items())


def worst_state(process_states):
    """The state of a bot whose replicas are in these (None: unknown): the first not RUNNING, else RUNNING."""
    known = [s for s in process_states if s is not None]
    if not known:
        return None
    return next((s for s in known if s != supervisor.RUNNING), known[0])


def format_text(report) -> str:
    lock = report.get("lock")
    lines = [f"CONFIG ERROR: {report['config_error']}", "  (running processes keep the config they started "
             "with; what follows is the database's view)", ""] if report.get("config_error") else []
    lines += [] if lock is None or lock["state"] == "open" else [
        f"FLEET {lock['state'].upper()}: {lock['reason'] or 'no reason given'} (by {lock['set_by'] or '?'}"
        + (f"; then {lock['returns_to']}" if lock["returns_to"] else "") + ")", ""]
    lines += [f"{'BOT':<44} {'SUPERVISORD':<11} {'HEALTH':<9} {'LAST HEARTBEAT':<26} {'PROCESSED':>9} {'FAILED':>6}"]
    for bot in report["bots"]:
        heartbeat = bot["last_heartbeat_at"].isoformat(timespec="seconds") if bot["last_heartbeat_at"] else "-"
        state = bot["state"] or ("-" if report["supervisord"] else "(no supervisord)")
        if not bot["on_this_host"]:
            state = "@" + ",".join(bot["hosts"])  # run by other hosts' supervisords
        if not bot["enabled"]:
            state += " disabled"
        lines.append(f"{bot['name']:<44} {state:<11} {bot['health'] or '-':<9} {heartbeat:<26} "
                     f"{bot['processed']:>9} {bot['failed']:>6}")
    lines.append("")
    lines.append(f"{'TICKETS':<44} {'STATE':<22} {'OPEN':>8} {'CLOSED':>8}")
    for row in report["tickets"]:
        lines.append(f"{row['metaservice'] + '/' + row['ticket_type']:<44} "
                     f"{str(row['state']) + ' ' + str(row['state_name']):<22} {row['open']:>8} {row['closed']:>8}")
    mail = report.get("mail") or {}
    if mail.get("pending"):
        lines += ["", f"MAIL  {mail['pending']} pending, {mail['retrying']} of them after a failed try"]
    hooks = report.get("webhooks") or {}
    if hooks.get("pending") or hooks.get("failed"):
        lines += ["", f"WEBHOOKS  {hooks['pending']} pending ({hooks['retrying']} after a failed try), "
                      f"{hooks['failed']} failed (see var/log/botfleet-webhook-1-deliver.log)"]
    if report.get("restart_backoffs"):
        lines += ["", "RESTARTS IN A ROW (the watchdog backs off: each waits twice as long, up to restart_backoff_max)"]
        for row in report["restart_backoffs"]:
            wait = f"next restart not before {row['backoff_s']:.0f}s from now" if row["backoff_s"] else "may restart now"
            lines.append(f"{row['bot'] + '@' + row['host']:<44} {row['restarts_in_a_row']:>3} in a row, {wait}")
    if report["watchdog_events"]:
        lines += ["", "RECENT WATCHDOG ACTIONS"]
        for event in report["watchdog_events"]:
            lines.append(f"{event['at']:%Y-%m-%d %H:%M:%S}  {event['bot'] or '-':<36} {event['action']:<8} {event['reason']}")
    return "\n".join(lines)

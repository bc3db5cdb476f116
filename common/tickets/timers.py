"""The timers of a ticket's life that its state's bot runs from its sweeps: acceptance rounds and reminders."""

from common.store import sql
from common.tickets.error_tickets import raise_error_ticket
from common.tickets.outcomes import Ticket, error_ticket

ROUNDS_PER_STATEMENT = 500


def send_due_rounds(conn, spec, ticket_type, actor, *, mail=True) -> int:
    """Send the acceptance rounds and reminders due in the bot's state, each once; how many rounds. `mail`:
    whether the fleet mails notifications (it has a mail: section)."""
    rounds = 0
    while True:
        row = conn.execute(sql.REMIND, {"metaservice": spec.metaservice, "ticket_type": spec.ticket_type,
                                        "state": spec.state, "limit": ROUNDS_PER_STATEMENT, "mail": mail,
                                        "notification_frequency_s": ticket_type.notification_frequency_s,
                                        "actor": actor}).fetchone()
        rounds += row["rounds"]  # rounds that reached someone; a ticket with nobody to ask is only moved on
        if row["due"] < ROUNDS_PER_STATEMENT:
            return rounds


PURGE_BATCH = 1000


def purge_closed(conn, spec, ticket_type, *, max_batches=10) -> tuple[int, bool]:
    """Remove the bot's closed tickets past their type's retention (deleted, or archived with their history),
    a batch per statement, at most `max_batches` per call so the bot's loop stays responsive; how many, and
    whether more may be left."""
    purged = 0
    for _ in range(max_batches):
        row = conn.execute(sql.PURGE_CLOSED, {
            "metaservice": spec.metaservice, "ticket_type": spec.ticket_type, "state": spec.state,
            "retention_s": ticket_type.retention_for(spec.state), "archive": ticket_type.on_retention == "archive",
            "limit": PURGE_BATCH}).fetchone()
        purged += row["purged"]
        if row["purged"] < PURGE_BATCH:
            return purged, False
    return purged, True


def report_stuck(conn, config, spec, ticket_type, actor, *, limit=100) -> int:
    """One error ticket for each ticket that has been in the bot's state, due and not taken, for longer than
    its stuck_after (seed 003: "creates an error message if the ticket remains in its list"); once per
    stay, whatever the replicas and sweeps. Time parked by a wait does not count. How many."""
    if spec.stuck_after_s is None:
        return 0
    with conn.transaction():
        rows = conn.execute(sql.MARK_STUCK, {"metaservice": spec.metaservice, "ticket_type": spec.ticket_type,
                                             "state": spec.state, "stuck_after_s": spec.stuck_after_s,
                                             "limit": limit}).fetchall()
        for row in rows:
            ticket = Ticket(id=row["id"], metaservice=row["metaservice"], ticket_type=row["ticket_type"],
                            state=row["state"], payload={}, group_role=row["group_role"])
            reason = (f"it has been in state {row['state']} ({spec.state_name}) for {row['stay_s']:.0f}s, waiting to be "
                      f"taken for longer than stuck_after ({spec.stuck_after_s:g}s) of bot {spec.name}")
            child = error_ticket(ticket, ticket_type, reason)
            child.group_role = row["group_role"] or child.group_role
            raise_error_ticket(conn, config, child, parent_id=row["id"], actor=actor)
    return len(rows)

"""The timers of a ticket's life that its state's bot runs from its sweeps: acceptance rounds and reminders."""

from common.store import sql

ROUNDS_PER_STATEMENT = 500


def send_due_rounds(conn, spec, ticket_type, actor) -> int:
    """Send the acceptance rounds and reminders due in the bot's state, each once; how many rounds."""
    rounds = 0
    while True:
        row = conn.execute(sql.REMIND, {"metaservice": spec.metaservice, "ticket_type": spec.ticket_type,
                                        "state": spec.state, "limit": ROUNDS_PER_STATEMENT,
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
            "retention_s": ticket_type.retention_s, "archive": ticket_type.on_retention == "archive",
            "limit": PURGE_BATCH}).fetchone()
        purged += row["purged"]
        if row["purged"] < PURGE_BATCH:
            return purged, False
    return purged, True

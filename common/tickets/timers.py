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

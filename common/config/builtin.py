"""Ticket types botfleet itself defines: the error ticket that people resolve."""

from common.config.models import State, TicketType

ERROR_METASERVICE = "botfleet"
ERROR_TYPE = "error"

# Raised when a ticket can take none of its next states, or its handler keeps failing. The stuck
# ticket waits for its error ticket; resolving the error ticket (state 2) lets its bot try again.
ERROR_TICKET_TYPE = TicketType(
    metaservice=ERROR_METASERVICE, name=ERROR_TYPE,
    states={1: State(1, "open", "A ticket is stuck and needs a person"),
            2: State(2, "resolved", "A person dealt with it; the stuck ticket is retried", final=True)},
    transitions={1: (2,)}, initial=1,
    lifetime_s=30 * 86400, notification_frequency_s=3600, retention_s=30 * 86400,
    description="A ticket that a bot could not move on; resolve it to let the bot retry",
)

BUILTIN_TYPES = {ERROR_TICKET_TYPE.key: ERROR_TICKET_TYPE}

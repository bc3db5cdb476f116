"""Ticket types botfleet itself defines: the error ticket that people resolve, the types that give its own
processes (mail, the API, webhooks) a bot name, and the JOBSWEEPER's runs."""

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


def _process_type(name: str, state_name: str, does: str, description: str) -> TicketType:
    """A type without tickets of its own: it gives one of botfleet's processes a working state, and so a
    bot name by the seed's rule (botfleet-<name>-1-<state_name>), supervised and watched like every bot."""
    return TicketType(
        metaservice=ERROR_METASERVICE, name=name,
        states={1: State(1, state_name, does), 2: State(2, "done", "", final=True)},
        transitions={1: (2,)}, initial=1,
        lifetime_s=86400, notification_frequency_s=86400, retention_s=86400,
        description=description,
    )


# The process that mails notifications (botfleet-mail-1-deliver).
MAIL_TYPE = "mail"
MAIL_TICKET_TYPE = _process_type(MAIL_TYPE, "deliver", "Mails notifications to users with an address",
                                 "The bot that mails notifications (no tickets of its own)")
MAIL_BOT = "botfleet-mail-1-deliver"

# The HTTP API's process (botfleet-api-1-serve): a dead or hung API is restarted like a dead or hung bot.
API_TYPE = "api"
API_TICKET_TYPE = _process_type(API_TYPE, "serve", "Serves the HTTP API", "The HTTP API's process (no tickets of its own)")
API_BOT = "botfleet-api-1-serve"

# The process that POSTs state changes to callback URLs (botfleet-webhook-1-deliver).
WEBHOOK_TYPE = "webhook"
WEBHOOK_TICKET_TYPE = _process_type(WEBHOOK_TYPE, "deliver", "POSTs state changes to callback URLs",
                                    "The bot that delivers webhooks (no tickets of its own)")
WEBHOOK_BOT = "botfleet-webhook-1-deliver"

# Seed 000's JOBSWEEPER: the fleet's own recurring maintenance job. Each run is a job of this type, so
# /operations shows when it ran and what it cleared; its bot (botfleet-sweep-1-running) runs them.
SWEEP_TYPE = "sweep"
SWEEP_TICKET_TYPE = TicketType(
    metaservice=ERROR_METASERVICE, name=SWEEP_TYPE,
    states={1: State(1, "running", "Clearing finished jobs and what purged tickets left behind"),
            2: State(2, "done", "The run finished; its payload says what it cleared", final=True, outcome="succeeded"),
            3: State(3, "failed", "The run failed; its payload says why", final=True, outcome="failed")},
    transitions={1: (2, 3)}, initial=1,
    lifetime_s=3600, notification_frequency_s=86400, retention_s=86400, job=True,
    description="JOBSWEEPER: the fleet's recurring maintenance job",
)
SWEEP_BOT = "botfleet-sweep-1-running"

# The process that finishes instances of status models whose timeout has passed, whether or not anybody
# asks about them (botfleet-status-1-expire); present when config/status_models has any.
STATUS_TYPE = "status"
STATUS_TICKET_TYPE = _process_type(STATUS_TYPE, "expire", "Finishes status model instances past their timeout",
                                   "The bot that times out status model instances (no tickets of its own)")
STATUS_BOT = "botfleet-status-1-expire"

BUILTIN_TYPES = {kind.key: kind for kind in (ERROR_TICKET_TYPE, MAIL_TICKET_TYPE, API_TICKET_TYPE,
                                             WEBHOOK_TICKET_TYPE, SWEEP_TICKET_TYPE, STATUS_TICKET_TYPE)}

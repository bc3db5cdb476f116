"""Exceptions that carry the exit code the CLI turns them into."""

import os

EX_CONFIG = getattr(os, "EX_CONFIG", 78)
EX_TEMPFAIL = getattr(os, "EX_TEMPFAIL", 75)
# A bot disabled in the database (`botfleet bot disable`) that was started anyway: the operator's word, not a
# failure; supervisord's config does not restart it (common/fleet/render.py).
EX_DISABLED = getattr(os, "EX_NOPERM", 77)


class BotfleetError(Exception):
    exit_code = 1


class ConfigError(BotfleetError):
    """A config file is invalid; the message names file, line, field and value."""

    exit_code = EX_CONFIG

    def __init__(self, path, line, field, message):
        self.path, self.line, self.field = path, line, field
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class BotDisabled(BotfleetError):
    """A bot started while the database says it is disabled."""

    exit_code = EX_DISABLED


class SchemaBehindError(BotfleetError):
    """The database schema is not at the revision this code needs."""

    exit_code = EX_TEMPFAIL


class TransitionNotAllowed(BotfleetError):
    def __init__(self, ticket_type, from_state, to_state):
        super().__init__(
            f"{ticket_type}: transition from state {from_state} to state {to_state} is not allowed by the graph"
        )


class AssigneeRefused(BotfleetError):
    """A user who may not hold the ticket: not a user, or not a member of its group."""


class TicketNotFound(BotfleetError):
    def __init__(self, ticket_id):
        super().__init__(f"ticket {ticket_id} does not exist")

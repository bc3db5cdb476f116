"""The shapes the API reads and writes (pydantic v2); the OpenAPI description is made from them."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from common.config.models import CALLBACK_URL_PATTERN

MAX_BIGINT, MAX_INT = 2**63 - 1, 2**31 - 1  # what the database's id and state columns hold
TicketId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="a ticket's id")]
StateCode = Annotated[int, Field(ge=0, le=MAX_INT)]

CallbackUrl = Annotated[str, Field(min_length=8, max_length=2000, pattern=CALLBACK_URL_PATTERN)]


def _name(description=None):
    """A name: not empty, without surrounding spaces."""
    return Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$", description=description)


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"metaservice": "helpdesk", "type": "request", "payload": {"summary": "the printer jams"},
         "creator": "ann"}]})

    metaservice: str = _name()
    type: str = _name("the ticket type, within the metaservice")
    payload: dict[str, Any] = Field(default_factory=dict, description="any JSON object; at most max_payload_bytes")
    group: str | None = Field(default=None, min_length=1, max_length=200,
                              description="the group asked to accept it, instead of the type's group_role")
    creator: str | None = Field(default=None, min_length=1, max_length=200,
                                description="whom the ticket is for: the user told when it times out; default "
                                            "the token's user; another user needs the admin scope")
    start_after: AwareDatetime | None = Field(default=None, description="it sleeps until then (with a time zone)")
    callback_url: CallbackUrl | None = Field(default=None, description="each state change is POSTed here")


class Ticket(BaseModel):
    id: int
    metaservice: str
    type: str
    state: int
    state_name: str | None
    payload: dict[str, Any]
    creator: str | None
    group: str | None
    assigned_user: str | None
    parent_id: int | None
    waiting_for: int | None
    step: int
    created_at: datetime
    state_entered_at: datetime
    deadline_at: datetime | None
    closed_at: datetime | None
    start_after: datetime | None = None
    callback_url: str | None = None


class Event(BaseModel):
    id: int
    step: int
    kind: str
    from_state: int | None
    to_state: int | None
    at: datetime
    actor: str | None
    detail: dict[str, Any] | None


class TicketPage(BaseModel):
    items: list[Ticket]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last one")


class TicketPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"payload": {"progress": 40, "note": None}}, {"state": 2}]})

    payload: dict[str, Any] | None = Field(default=None, description="a JSON Merge Patch of the payload: keys set, "
                                                                      "nested objects merged, null removes a key")
    state: StateCode | None = Field(default=None, description="the next state, along the type's graph")


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user": "ann"}]})

    user: str = _name("a member of the ticket's group: the token's user; another user needs the admin scope")


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "withdrawn by the requester"}]})

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None
    state: str | None = Field(default=None, description="503 fleet_locked only: the lock's state")
    reason: str | None = Field(default=None, description="503 fleet_locked only: why the fleet is locked")


class ErrorBody(BaseModel):
    error: ErrorDetail


# What any route may answer besides its own: a body that is not JSON (400; any Content-Type is read as
# JSON, api/content_type.py), no or a bad token (401, 403), a ticket or type that does not exist (404), a
# conflict with the ticket's state or graph (409), a body too large (413), or not fitting (422).
ERROR_RESPONSES = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422)}
CREATE_RESPONSES = {**ERROR_RESPONSES,
                    503: {"model": ErrorBody, "description": "the fleet is locked: nothing was written"}}


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"message": "GENERATION_START"}]})

    message: str = Field(min_length=1, max_length=100, description="one of the progress messages its state lists")


class ProgressOut(BaseModel):
    recorded: bool = Field(description="false: an unknown message, a repeat, or a ticket the worker does not hold; "
                                       "nothing was recorded")


class FinishIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"to": 4, "payload": {"error": "disk full"}}]})

    to: StateCode | None = Field(default=None, description="the next state (default: the normal next), along the graph")
    payload: dict[str, Any] | None = Field(default=None, description="a JSON Merge Patch of the payload")


class WorkerOut(BaseModel):
    name: str
    first_seen_at: datetime
    last_contact_at: datetime
    ticket_id: int | None = Field(description="the ticket it holds now, if any")
    metaservice: str | None
    type: str | None
    state: int | None
    stalls_at: datetime | None = Field(description="when its ticket is taken back unless it reports progress")

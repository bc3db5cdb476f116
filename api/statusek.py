"""Status models over HTTP, with seed 001's (statusek) endpoints and reply shapes, so that its clients work
unchanged: every reply is {"status": bool, "message": str, ...}, beside a real HTTP status (400 bad request,
404 unknown token or object, 409 refused). Creating an instance needs a bearer token with `submit`; after
that, the instance token is the capability for its instance, as in the seed.

Every call is one or two statements awaited on the event loop (api/aio.py); setStatus writes only if the
instance is as it read it (a compare and set), so two concurrent calls of one status cannot both succeed."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api.aio import fetch_all, fetch_one
from api.auth import require
from api.errors import SEED_TAG
from common.status_models.instances import (
    StatusRefused,
    create_params,
    instance_of,
    parse_token,
    set_status_params,
)
from common.status_models.rules import unknown_status
from common.store import sql

# Bodies are read as JSON whatever their Content-Type, as the seed's clients send them (api/content_type.py).
router = APIRouter(tags=[SEED_TAG])
# How often a setStatus reads the instance again when another call changed it in between.
SET_TRIES = 5
MAX_TIMEOUT_S = 2**31 - 1


class SeedReply(BaseModel):
    status: bool
    message: str


class CreateIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"object_name": "2-POINT LINE TASK",
                                                               "instance_timeout": 600}]})
    object_name: str = Field(min_length=1, max_length=200)
    instance_timeout: StrictInt = Field(ge=1, le=MAX_TIMEOUT_S, description="seconds until it finishes by itself")


class Created(SeedReply):
    instance_token: str


class TokenIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"instance_token": "1d36bcdf-d776-4e7a-97a6-4431079d2b2e"}]})
    instance_token: str = Field(min_length=1, max_length=100)


class StatusIn(TokenIn):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"instance_token": "1d36bcdf-d776-4e7a-97a6-4431079d2b2e", "status_name": "RUN"}]})
    status_name: str = Field(min_length=1, max_length=200)
    status_message: str | None = Field(default=None, max_length=10_000)


class Finished(SeedReply):
    reason: str | None = Field(description="completed, stopped or timed_out; null while not finished")
    stop_status: str | None = None


class SeedStatus(BaseModel):
    ObjectID: int | None
    StatusID: int | None
    StatusName: str
    StatusDesc: str | None
    StatusType: str | None


class SeedEvent(BaseModel):
    Status: SeedStatus
    StatusMessage: str | None
    EventCreationDt: str


class Events(SeedReply):
    events: list[SeedEvent]


REFUSALS = {status: {"model": SeedReply, "description": text} for status, text in (
    (400, "a malformed body, or a value out of bounds"), (404, "an unknown instance token or object"),
    (409, "refused by the model's rules, or the instance is finished"))}


async def _instance(request, token: str):
    token = parse_token(token)
    return instance_of(await fetch_one(request, sql.READ_STATUS_INSTANCE, {"token": token}), token)


@router.post("/instance/create", status_code=201, response_model=Created,
             responses={**REFUSALS, 401: {"description": "no valid bearer token"},
                        403: {"description": "the token lacks the submit scope"}})
async def create_instance(body: CreateIn, request: Request, _: Annotated[str, Depends(require("submit"))]):
    """An instance of an object's status model; it finishes by itself after instance_timeout seconds."""
    params = create_params(request.app.state.config, body.object_name, body.instance_timeout)
    row = await fetch_one(request, sql.CREATE_STATUS_INSTANCE, params)
    if row is None:  # in the config, but not in the database yet: the API syncs the models when it starts
        raise StatusRefused(404, f"object {body.object_name!r} is not known to the database yet; restart the API "
                                 "(botfleet up) after adding a status model", "object_name")
    return {"status": True, "message": "Success", "instance_token": row["token"]}


@router.post("/status/setStatus", response_model=SeedReply, responses=REFUSALS)
async def set_status(body: StatusIn, request: Request):
    """Set a status on the instance, once, when the model allows it now."""
    for _ in range(SET_TRIES):
        instance = await _instance(request, body.instance_token)
        params = set_status_params(request.app.state.config, instance, body.status_name, body.status_message)
        if await fetch_one(request, sql.SET_STATUS, params) is not None:
            return {"status": True, "message": "Success"}
    raise StatusRefused(409, f"instance {body.instance_token} changed {SET_TRIES} times while status "
                             f"{body.status_name!r} was being set; try again", "status_name")


@router.post("/status/checkStatusIsSet", response_model=SeedReply, responses=REFUSALS)
async def check_status_is_set(body: StatusIn, request: Request):
    """Whether the status is set on the instance."""
    instance = await _instance(request, body.instance_token)
    model = request.app.state.config.status_models.get(instance.object_name)
    unknown = unknown_status(model, body.status_name) if model is not None else None
    if unknown is not None:
        raise StatusRefused(unknown.http_status, unknown.message, "status_name")
    is_set = body.status_name in instance.set_statuses
    return {"status": is_set, "message": "Status is set" if is_set else "Status is not set"}


@router.post("/instance/checkIsFinished", response_model=Finished, responses=REFUSALS)
async def check_is_finished(body: TokenIn, request: Request):
    """Whether the instance is finished, and why: completed (every MANDATORY status), stopped (a STOP status)
    or timed_out."""
    instance = await _instance(request, body.instance_token)
    messages = {"completed": "Instance is finished: every mandatory status is set",
                "stopped": f"Instance is finished: stop status {instance.stop_status} is set",
                "timed_out": "Instance is finished: its timeout has passed"}
    return {"status": instance.finished, "reason": instance.finish_reason, "stop_status": instance.stop_status,
            "message": messages.get(instance.finish_reason, "Instance is not finished")}


@router.post("/event/getEvents", response_model=Events, responses=REFUSALS)
async def get_events(body: TokenIn, request: Request):
    """The statuses set on the instance, oldest first ([] when none is)."""
    instance = await _instance(request, body.instance_token)
    rows = await fetch_all(request, sql.STATUS_EVENTS, {"id": instance.id})
    return {"status": True, "message": "Success", "events": [
        {"Status": {"ObjectID": row["object_id"], "StatusID": row["status_id"], "StatusName": row["status_name"],
                    "StatusDesc": row["description"], "StatusType": row["type"]},
         "StatusMessage": row["message"], "EventCreationDt": row["at"].isoformat()} for row in rows]}

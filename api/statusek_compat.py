"""Status models as the upstream statusek service answers, under /statusek/, for its clients unchanged: any
method, parameters in the query string or the body (JSON, or a form), HTTP 200 always, with {"status",
"message", "data"} in upstream's words (common/status_models/upstream.py), checkStatusIsReadyToSet too, and
no bearer token on create when fleet.yaml says `statusek: {open_create: true}`.

Upstream's meaning without its defects: setStatus sets a status once however many calls race (the compare
and set of api/statusek.py), events come oldest first and [] when there are none, a timeout must be a whole
number of seconds from 1 on, and a body that cannot be read gets a JSON reply, not a dropped connection."""

import logging

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from api.aio import fetch_all, fetch_one
from api.auth import require
from api.errors import ApiError
from api.statusek import SET_TRIES
from api.statusek import _instance as read_instance
from common.status_models import upstream
from common.status_models.instances import (
    UNKNOWN_OBJECT,
    UNKNOWN_TOKEN,
    StatusRefused,
    create_params,
    model_of,
    set_status_params,
)
from common.status_models.rules import FINISHED, UNKNOWN_STATUS, refusal
from common.store import sql

PREFIX = "/statusek"
# Upstream's router takes every method on every path.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

log = logging.getLogger("botfleet.api")
router = APIRouter(prefix=PREFIX, include_in_schema=False)
_bearer = HTTPBearer(auto_error=False)
_submit = require("submit")


class Failed(Exception):
    """A reply with status false and this message."""


def _refused(exc: StatusRefused, token: str = "", status: str = "", instance=None) -> Failed:
    text = upstream.refused_text(exc.kind, token=token, status=status,
                                 object_name=instance.object_name if instance is not None else "",
                                 finished_by=instance.finish_reason if instance is not None else None)
    return Failed(text or str(exc))


def route(path: str):
    """Registers `handler(request, params) -> data` under PREFIX + path, answering as upstream does."""
    def register(handler):
        async def endpoint(request: Request):
            try:
                params = upstream.read_params(request.query_params, await request.body(),
                                              request.headers.get("content-type", ""))
                body = await handler(request, params)
            except (upstream.ParamsError, Failed) as exc:
                body = upstream.reply(False, str(exc))
            except psycopg.Error as exc:  # upstream says so in its own shape too
                log.warning("%s %s: %s", request.method, request.url.path, str(exc).strip().split("\n")[0])
                body = upstream.reply(False, "Database error: 'the database is unavailable or busy; try again "
                                             "shortly'")
            return JSONResponse(body)
        endpoint.__name__ = f"statusek_{handler.__name__}"
        router.add_api_route(path, endpoint, methods=METHODS)
        return handler
    return register


async def _read(request, token: str):
    try:
        return await read_instance(request, token)
    except StatusRefused:
        raise Failed(upstream.refused_text(UNKNOWN_TOKEN, token=token)) from None


def _model(request, instance):
    try:
        return model_of(request.app.state.config, instance)
    except StatusRefused as exc:
        raise _refused(exc, instance.token, instance=instance) from None


def _unfinished(instance) -> None:
    if instance.finished:
        raise Failed(upstream.refused_text(FINISHED, token=instance.token, finished_by=instance.finish_reason))


def _names(params) -> tuple[str, str]:
    return upstream.text_param(params, "instance_token"), upstream.text_param(params, "status_name")


async def _authorized(request) -> None:
    if request.app.state.config.statusek_open_create:
        return
    try:
        await _submit(request, await _bearer(request))
    except ApiError as exc:
        raise Failed(f"ERROR: {exc.message} (or allow it without: statusek: {{open_create: true}} in "
                     "fleet.yaml)") from None


@route("/instance/create")
async def create(request, params) -> dict:
    await _authorized(request)
    object_name, timeout_s = upstream.text_param(params, "object_name"), upstream.timeout_param(params)
    try:
        row = await fetch_one(request, sql.CREATE_STATUS_INSTANCE,
                              create_params(request.app.state.config, object_name, timeout_s))
    except StatusRefused:
        row = None
    if row is None:  # no model, or one the database does not have yet (the API syncs them as it starts)
        raise Failed(upstream.refused_text(UNKNOWN_OBJECT, object_name=object_name))
    return upstream.reply(True, data={"instance_token": row["token"]})


@route("/status/setStatus")
async def set_status(request, params) -> dict:
    token, status = _names(params)
    message = upstream.text_param(params, "status_message") or None
    for _ in range(SET_TRIES):
        instance = await _read(request, token)
        _unfinished(instance)
        try:
            changes = set_status_params(request.app.state.config, instance, status, message)
        except StatusRefused as exc:
            raise _refused(exc, token, status, instance) from None
        if await fetch_one(request, sql.SET_STATUS, changes) is not None:
            return upstream.reply(True)
    raise Failed(f"ERROR: Instance '{token}' changed {SET_TRIES} times while status '{status}' was being set; "
                 "try again")


@route("/status/checkStatusIsSet")
async def check_status_is_set(request, params) -> dict:
    token, status = _names(params)
    instance = await _read(request, token)
    if status not in _model(request, instance).statuses:
        raise Failed(upstream.refused_text(UNKNOWN_STATUS, token=token, status=status))
    return upstream.reply(True, data={"status_is_set": status in instance.set_statuses})


@route("/status/checkStatusIsReadyToSet")
async def check_status_is_ready_to_set(request, params) -> dict:
    token, status = _names(params)
    instance = await _read(request, token)
    _unfinished(instance)
    refused = refusal(_model(request, instance), token, instance.set_statuses, status, None)
    if refused is None:
        return upstream.reply(True, data={"status_is_ready_to_set": True, "status_is_ready_to_set_description": ""})
    text = upstream.refused_text(refused.kind, token=token, status=status)
    if refused.kind not in upstream.NOT_READY:
        raise Failed(text)
    return upstream.reply(True, data={"status_is_ready_to_set": False, "status_is_ready_to_set_description": text})


@route("/instance/checkIsFinished")
async def check_is_finished(request, params) -> dict:
    instance = await _read(request, upstream.text_param(params, "instance_token"))
    # "instanse": upstream's spelling, which its clients read.
    return upstream.reply(True, data={"instance_is_finished": instance.finished,
                                      "instanse_is_finished_description":
                                          upstream.FINISH_DESCRIPTIONS.get(instance.finish_reason, "")})


@route("/event/getEvents")
async def get_events(request, params) -> dict:
    instance = await _read(request, upstream.text_param(params, "instance_token"))
    rows = await fetch_all(request, sql.STATUS_EVENTS, {"id": instance.id})
    return upstream.reply(True, data={"events": [upstream.event(row) for row in rows]})

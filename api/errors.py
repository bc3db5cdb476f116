"""Every error the API answers is {"error": {"code", "message", "field"}} with a real HTTP status."""

import logging

import psycopg
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from common.access.fleet_lock import FleetLocked
from common.errors import AssigneeRefused, BotfleetError, TicketNotFound, TransitionNotAllowed
from common.status_models.instances import StatusRefused
from common.tickets.payload import PayloadError
from common.tickets.workers import NoExternalWork, NotHeld, WorkerBusy

# The routes of seed 001 (statusek) answer in its shape, {"status": false, "message"}, with the error
# object beside it, and a body that does not fit is 400 there, as its clients expect. So does every
# refusal under their prefixes: a route that does not exist, a method, a body too large.
SEED_TAG = "status models (statusek)"
SEED_PREFIXES = ("/status/", "/instance/", "/event/")
# When a client that got a 503 for the database should try again.
RETRY_AFTER_S = 5

log = logging.getLogger("botfleet.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def seed_path(path: str) -> bool:
    return path.startswith(SEED_PREFIXES)


def _seed_route(request: Request) -> bool:
    return SEED_TAG in getattr(request.scope.get("route"), "tags", ()) or seed_path(request.url.path)


def error_body(code: str, message: str, field: str | None, seed: bool) -> dict:
    body = {"error": {"code": code, "message": message, "field": field}}
    return {"status": False, "message": message, **body} if seed else body


def error_response(status: int, code: str, message: str, field: str | None = None, headers=None,
                   request: Request | None = None) -> JSONResponse:
    body = error_body(code, message, field, request is not None and _seed_route(request))
    return JSONResponse(body, status_code=status, headers=headers)


# The fleet's own refusals, as HTTP: what does not exist, and what the ticket's state or graph forbids.
_FLEET_ERRORS = (
    (TicketNotFound, 404, "not_found", None),
    (TransitionNotAllowed, 409, "transition_not_allowed", "state"),
    (AssigneeRefused, 409, "assignee_refused", "user"),
    (PayloadError, 422, "invalid_payload", "payload"),
    (WorkerBusy, 409, "worker_busy", "name"),
    (NotHeld, 409, "not_held", None),
    (NoExternalWork, 422, "no_external_work", "type"),
    (BotfleetError, 409, "conflict", None),
)


def _field(location) -> str | None:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = _field(first.get("loc", ()))
    where = f"{field}: " if field else ""
    if _seed_route(request):  # malformed or empty JSON, a missing field, a timeout that is not a positive integer
        message = (f"the body must be a JSON object: {first.get('msg')}"
                   if first.get("type") == "json_invalid" or first.get("loc") == ("body",) else f"{where}{first.get('msg')}")
        return error_response(400, "bad_request", message, field, request=request)
    if first.get("type") == "json_invalid":
        return error_response(400, "malformed_json", f"the body is not valid JSON: {first.get('msg')}")
    return error_response(422, "invalid", f"{where}{first.get('msg')}", field)


async def _http(request: Request, exc: HTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                          headers=getattr(exc, "headers", None), request=request)


async def _api(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers, request=request)


async def _status_refused(request: Request, exc: StatusRefused) -> JSONResponse:
    codes = {400: "bad_request", 404: "not_found", 409: "refused"}
    return error_response(exc.http_status, codes.get(exc.http_status, "refused"), str(exc), exc.field,
                          request=request)


async def _fleet(request: Request, exc: BotfleetError) -> JSONResponse:
    if isinstance(exc, FleetLocked):  # the seed's locked REST interface: say what it is and why
        return JSONResponse({"error": {"code": "fleet_locked", "message": str(exc), "field": None,
                                       "state": exc.lock.state, "reason": exc.lock.reason}}, status_code=503)
    for kind, status, code, field in _FLEET_ERRORS:
        if isinstance(exc, kind):
            return error_response(status, code, str(exc), field, request=request)
    raise exc  # not reached: BotfleetError is the last row


async def _data(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
    # A value that fits the description but not the database (a NUL character in a text, a number out
    # of a column's range): the request's fault, refused as it stands, with what the database said.
    return error_response(422, "invalid_value", f"a value the database cannot store: {exc.diag.message_primary or exc}",
                          request=request)


async def _database(request: Request, exc: psycopg.Error) -> JSONResponse:
    # The server away (stopped, restarting, unreachable), no connection free within the pool's wait, or a
    # statement that gave up on a lock or on its time limit: each passes, so 503 and when to try again.
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        code, message = "busy", "something this request needs is locked by another session; try again shortly"
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        code, message = "database_timeout", "the database did not answer in time; try again shortly"
    else:
        code, message = "database_unavailable", "the database is unavailable; try again shortly"
    log.warning("%s %s: %s (%s)", request.method, request.url.path, code, str(exc).strip().split("\n")[0])
    return error_response(503, code, message, headers={"Retry-After": str(RETRY_AFTER_S)}, request=request)


def install(app) -> None:
    # psycopg_pool's PoolTimeout and PoolClosed are OperationalErrors too.
    app.add_exception_handler(psycopg.OperationalError, _database)
    app.add_exception_handler(psycopg.InterfaceError, _database)
    app.add_exception_handler(psycopg.errors.DataError, _data)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(BotfleetError, _fleet)
    app.add_exception_handler(StatusRefused, _status_refused)

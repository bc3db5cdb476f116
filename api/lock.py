"""/lock: the fleet's lock. Anyone with `read` sees it; admins lock (ops_only) and unlock. While it is not
open, POST /tickets and POST /job answer 503 with its state and reason, and every GET goes on answering."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.models import ERROR_RESPONSES
from common.access.fleet_lock import lock_fleet, read_lock, unlock_fleet

router = APIRouter(tags=["lock"])


class LockOut(BaseModel):
    state: str = Field(description="open, ops_only (an admin's lock) or closed (an exclusive ticket runs alone)")
    reason: str | None
    set_by: str | None
    set_at: datetime | None
    holder_ticket: int | None = Field(description="the exclusive ticket the fleet is closed for")
    returns_to: str | None = Field(description="while closed: the state the fleet returns to after it")


class LockIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "database upgrade"}]})

    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="shown in every 503 meanwhile")


def _out(lock) -> LockOut:
    return LockOut(**lock.__dict__)


@router.get("/lock", response_model=LockOut, responses=ERROR_RESPONSES)
def show(request: Request, _: Annotated[str, Depends(require("read"))]) -> LockOut:
    with request.app.state.pool.connection() as conn:
        return _out(read_lock(conn))


@router.put("/lock", response_model=LockOut, responses=ERROR_RESPONSES)
def lock(body: LockIn, request: Request, token: Annotated[str, Depends(require("admin"))]) -> LockOut:
    """Lock the fleet for operations: new work is refused until DELETE /lock. While an exclusive ticket
    runs, the fleet stays closed and is ops_only after it."""
    with request.app.state.pool.connection() as conn:
        return _out(lock_fleet(conn, body.reason, f"api:{token}"))


@router.delete("/lock", response_model=LockOut, responses=ERROR_RESPONSES)
def unlock(request: Request, token: Annotated[str, Depends(require("admin"))]) -> LockOut:
    """Open the fleet (after the exclusive ticket, if one runs)."""
    with request.app.state.pool.connection() as conn:
        return _out(unlock_fleet(conn, f"api:{token}"))

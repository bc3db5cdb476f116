"""/types: the ticket types and their states, the seed's "codes descriptions stored in a table for Web API
use", and the administration panel's two settings (lifetime, notification frequency) for admins."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import require
from api.errors import ApiError
from api.models import ERROR_RESPONSES
from common.config.durations import parse_duration_s
from common.tickets.settings import UNSET, set_type_settings, type_settings

router = APIRouter(tags=["types"])


class StateOut(BaseModel):
    code: int
    name: str
    description: str
    final: bool
    outcome: str | None = Field(description="a job type's final state: succeeded or failed")
    retention_s: float = Field(description="how long a ticket closed here is kept")


class TypeOut(BaseModel):
    metaservice: str
    name: str
    description: str
    initial: int
    states: list[StateOut]
    transitions: list[list[int]] = Field(description="[current, normal next, alternates...], as in the YAML")
    group_role: str | None
    lifetime_s: float = Field(description="in force: the override if there is one, else the YAML value")
    notification_frequency_s: float = Field(description="in force, like lifetime_s")
    yaml_lifetime_s: float
    yaml_notification_frequency_s: float
    retention_s: float
    on_timeout: dict[str, int]
    on_retention: str
    exclusive: bool
    runs_when_locked: bool
    job: bool = Field(description="its tickets are jobs, listed by /operations")


class TypeSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"lifetime": "2h", "notification_frequency": "15m"}, {"lifetime": None}]})

    lifetime: str | float | None = Field(default=None, description="a duration (2h, 90m, seconds); null: the YAML value")
    notification_frequency: str | float | None = Field(default=None, description="like lifetime")

    @field_validator("lifetime", "notification_frequency")
    @classmethod
    def _duration(cls, value: Any):
        if value is None:
            return None
        seconds = parse_duration_s(value)  # a ValueError becomes a 422 naming the field
        if seconds <= 0:
            raise ValueError("must be longer than zero")
        return seconds


def _type_out(kind, settings) -> TypeOut:
    return TypeOut(
        metaservice=kind.metaservice, name=kind.name, description=kind.description, initial=kind.initial,
        states=[StateOut(code=s.code, name=s.name, description=s.description, final=s.final, outcome=s.outcome,
                         retention_s=kind.retention_for(s.code))
                for s in sorted(kind.states.values(), key=lambda s: s.code)],
        transitions=[[current, *following] for current, following in sorted(kind.transitions.items())],
        group_role=kind.group_role, lifetime_s=settings["effective_lifetime_s"],
        notification_frequency_s=settings["effective_notification_frequency_s"],
        yaml_lifetime_s=settings["lifetime_s"], yaml_notification_frequency_s=settings["notification_frequency_s"],
        retention_s=kind.retention_s, on_timeout={str(k): v for k, v in kind.on_timeout.items()},
        on_retention=kind.on_retention, exclusive=kind.exclusive, runs_when_locked=kind.runs_when_locked,
        job=kind.job)


def _kind(config, metaservice, name):
    kind = config.types.get((metaservice, name))
    if kind is None:
        raise ApiError(404, "not_found", f"there is no ticket type {metaservice}/{name}")
    return kind


@router.get("/types", response_model=list[TypeOut], responses=ERROR_RESPONSES)
def types(request: Request, _: Annotated[str, Depends(require("read"))]) -> list[TypeOut]:
    config = request.app.state.config
    with request.app.state.pool.connection() as conn:
        rows = {(r["metaservice"], r["name"]): r for r in type_settings(conn, config)}
    return [_type_out(kind, rows[key]) for key, kind in sorted(config.types.items()) if key in rows]


@router.get("/types/{metaservice}/{name}", response_model=TypeOut, responses=ERROR_RESPONSES)
def one_type(metaservice: str, name: str, request: Request, _: Annotated[str, Depends(require("read"))]) -> TypeOut:
    kind = _kind(request.app.state.config, metaservice, name)
    with request.app.state.pool.connection() as conn:
        [row] = type_settings(conn, request.app.state.config, kind.key)
    return _type_out(kind, row)


@router.patch("/types/{metaservice}/{name}", response_model=TypeOut, responses=ERROR_RESPONSES)
def set_type(metaservice: str, name: str, body: TypeSettingsIn, request: Request,
             _: Annotated[str, Depends(require("admin"))]) -> TypeOut:
    """Override the lifetime and/or notification frequency (fields not sent stay as they are; null goes back
    to the YAML value). Running bots take it up without a restart; a new lifetime applies to open tickets too."""
    kind = _kind(request.app.state.config, metaservice, name)
    changes = {field: getattr(body, field) if field in body.model_fields_set else UNSET
               for field in ("lifetime", "notification_frequency")}
    with request.app.state.pool.connection() as conn:
        row = set_type_settings(conn, request.app.state.config, kind.key, **changes)
    return _type_out(kind, row)

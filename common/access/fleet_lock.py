"""The fleet's lock (seed 000's API lock): open, ops_only (an admin's, for exclusive work by hand) or closed
(the fleet's own, while an exclusive ticket runs alone). While it is not open, the API creates nothing and
bots of types without runs_when_locked claim nothing; every read goes on answering."""

from dataclasses import dataclass
from datetime import datetime

from common.errors import BotfleetError
from common.store import sql

OPEN, OPS_ONLY, CLOSED = "open", "ops_only", "closed"


@dataclass(frozen=True)
class FleetLock:
    state: str
    reason: str | None
    set_by: str | None
    set_at: datetime | None
    holder_ticket: int | None  # the exclusive ticket the fleet is closed for
    returns_to: str | None  # while closed: the state it goes back to when the holder ends

    @classmethod
    def from_row(cls, row, prefix: str = "") -> "FleetLock":
        return cls(**{name: row[prefix + name] for name in cls.__dataclass_fields__})

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    def describe(self) -> str:
        if self.is_open:
            return "open"
        text = f"{self.state} ({self.reason or 'no reason given'}; by {self.set_by or '?'})"
        return text + (f", then {self.returns_to}" if self.returns_to else "")


class FleetLocked(BotfleetError):
    """A write the lock refuses: the API answers 503 with the lock's state and reason."""

    def __init__(self, lock: FleetLock):
        super().__init__(f"the fleet is {lock.state}: {lock.reason or 'no reason given'}; "
                         "new work is refused until it opens")
        self.lock = lock


def read_lock(conn) -> FleetLock:
    """The lock as it stands."""
    return FleetLock.from_row(conn.execute(sql.READ_FLEET_LOCK).fetchone())


def lock_fleet(conn, reason: str, by: str) -> FleetLock:
    """ops_only, with why and by whom. While an exclusive ticket runs, the fleet stays closed and returns to
    ops_only after it."""
    if not (reason or "").strip():
        raise BotfleetError("a lock needs a reason (--reason), so whoever finds the fleet locked knows why")
    return _set(conn, OPS_ONLY, reason.strip(), by)


def unlock_fleet(conn, by: str) -> FleetLock:
    """open. While an exclusive ticket runs, the fleet stays closed and opens after it."""
    return _set(conn, OPEN, None, by)


def reset_lock(conn, by: str) -> FleetLock:
    """A fresh start of the fleet starts it open (the seed's server boots open)."""
    with conn.transaction():
        return FleetLock.from_row(conn.execute(sql.RESET_FLEET_LOCK, {"by": by}).fetchone())


def _set(conn, state, reason, by) -> FleetLock:
    with conn.transaction():
        return FleetLock.from_row(conn.execute(sql.SET_FLEET_LOCK, {"state": state, "reason": reason,
                                                                    "by": by}).fetchone())

"""What a status model allows: pure decisions over an instance's set statuses, so they can be
table-tested and are the same for every caller (the API, the CLI, the expiry sweep)."""

from dataclasses import dataclass

from common.config.status_models import MANDATORY, OPTIONAL, STOP

COMPLETED, STOPPED, TIMED_OUT = "completed", "stopped", "timed_out"
FINISH_REASONS = (COMPLETED, STOPPED, TIMED_OUT)
UNKNOWN_STATUS, FINISHED, ALREADY_SET, NEEDS_MANDATORY, NEEDS_ONE_OF, TOO_LATE = (
    "unknown_status", "finished", "already_set", "needs_mandatory", "needs_one_of", "too_late")


@dataclass(frozen=True)
class Refusal:
    """Why a status may not be set now: HTTP status, a message naming the status and the instance, and
    which rule refused it (UNKNOWN_STATUS ... TOO_LATE), for callers that word it their own way (statusek's replies)."""
    http_status: int
    message: str
    kind: str


def unknown_status(model, status: str) -> Refusal | None:
    """400 naming the model's statuses when `status` is not one of them."""
    if status in model.statuses:
        return None
    return Refusal(400, f"status {status!r} is not a status of {model.object_name!r} "
                        f"(its statuses: {', '.join(model.statuses)})", UNKNOWN_STATUS)


def _mandatory_before(model, status: str) -> list:
    return sorted(name for name in model.predecessors[status] if model.statuses[name].type == MANDATORY)


def refusal(model, token: str, set_statuses, status: str, finished_reason: str | None) -> Refusal | None:
    """None when `status` may be set on an instance of `model` that has `set_statuses`; else why not."""
    unknown = unknown_status(model, status)
    if unknown is not None:
        return unknown
    if finished_reason is not None:
        return Refusal(409, f"instance {token} is finished ({finished_reason}): status {status!r} cannot be set",
                       FINISHED)
    done = set(set_statuses)
    if status in done:
        return Refusal(409, f"status {status!r} is already set on instance {token}", ALREADY_SET)
    before, mandatory = model.predecessors[status], _mandatory_before(model, status)
    missing = [name for name in mandatory if name not in done]
    if missing:
        return Refusal(409, f"status {status!r} needs {', '.join(missing)} set first on instance {token}",
                       NEEDS_MANDATORY)
    if before and not mandatory and not before & done:
        return Refusal(409, f"status {status!r} needs one of {', '.join(sorted(before))} set first on "
                            f"instance {token}", NEEDS_ONE_OF)
    if model.statuses[status].type == OPTIONAL:
        later = sorted(model.successors(status) & done)
        if later:
            return Refusal(409, f"optional status {status!r} comes too late on instance {token}: "
                                f"{', '.join(later)} is already set", TOO_LATE)
    return None


def requirement(model, status: str) -> str:
    """When a status may be set, in words: first, after its MANDATORY predecessors, or after one of the others."""
    before, mandatory = model.predecessors[status], _mandatory_before(model, status)
    if mandatory:
        return "after " + " and ".join(mandatory)
    return f"after one of {', '.join(sorted(before))}" if before else "first"


def finish_reason(model, set_statuses) -> str | None:
    """Whether statuses set make an instance finished: stopped (a STOP status), completed (every MANDATORY
    one), or None. A timeout is the clock's, not the statuses'."""
    done = set(set_statuses)
    if any(model.statuses[name].type == STOP for name in done if name in model.statuses):
        return STOPPED
    if model.mandatory and model.mandatory <= done:
        return COMPLETED
    return None

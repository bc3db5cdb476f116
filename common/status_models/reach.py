"""Statuses a status model can never set, whatever its clients do: pure, over the model alone, for
`botfleet config check` to warn about. A status can be set only while the instance is not finished, so one
that needs a STOP status first, or every MANDATORY status first (an optional status after the last
mandatory one), is dead; so is one that needs a dead status, or follows only dead ones.

What a status needs first is under-counted where it has a choice (one of its optional predecessors: only
what every live choice needs), so a warning is never wrong, though a model can hide a dead status from it."""

from common.config.status_models import MANDATORY, STOP


def unreachable(model) -> dict:
    """status name -> why it can never be set, in the model's order; {} when every status can be."""
    needs: dict = {}  # status -> the statuses set before it on every way to it (None: there is no way)
    why: dict = {}

    def walk(name):
        if name in needs:
            return needs[name]
        before = model.predecessors[name]
        mandatory = sorted(p for p in before if model.statuses[p].type == MANDATORY)
        for predecessor in sorted(before):
            walk(predecessor)
        if mandatory:
            dead = [p for p in mandatory if needs[p] is None]
            required = None if dead else set().union(*({p} | needs[p] for p in mandatory))
            reason = f"it needs {', '.join(dead)} set first, which can never be set" if dead else None
        elif before:
            live = [p for p in sorted(before) if needs[p] is not None]
            required = set.intersection(*({p} | needs[p] for p in live)) if live else None
            reason = None if live else f"it follows only {', '.join(sorted(before))}, which can never be set"
        else:
            required, reason = set(), None
        if required is not None:
            reason = _finished_before(model, required)
        needs[name] = None if reason else required
        if reason:
            why[name] = reason
        return needs[name]

    for name in model.statuses:
        walk(name)
    return {name: why[name] for name in model.statuses if name in why}


def _finished_before(model, required) -> str | None:
    stops = sorted(name for name in required if model.statuses[name].type == STOP)
    if stops:
        return f"it needs the STOP status {stops[0]} set first, which finishes the instance"
    if model.mandatory and model.mandatory <= required:
        return (f"it needs {', '.join(sorted(model.mandatory))} set first, every MANDATORY status, which finishes "
                "the instance")
    return None

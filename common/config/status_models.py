"""Status models (seed 001, statusek): config/status_models/*.yaml, one object's statuses and the order
they may be set in, validated like ticket types (file, line, field).

    object: 2-POINT LINE TASK            # the object's name; the file's name when left out
    description: a task that runs, then finishes
    statuses:
      RUN: {description: Task is running, type: MANDATORY}
      FINISHED: {description: Task is finished, type: MANDATORY}
    workflow:                            # [status, statuses that may follow it...]
      - [RUN, FINISHED]

A status whose predecessors include MANDATORY ones may be set once they all are; one with only
optional predecessors once any of them is. An instance finishes when a STOP status is set, when every
MANDATORY status is, or when its timeout has passed.
"""

from dataclasses import dataclass, field
from pathlib import Path

from common.config import yamlfile
from common.errors import ConfigError

MANDATORY, OPTIONAL, STOP = "MANDATORY", "OPTIONAL", "STOP"
STATUS_TYPES = (MANDATORY, OPTIONAL, STOP)
MODEL_KEYS = {"object", "description", "statuses", "workflow"}
STATUS_KEYS = {"description", "type"}
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class ModelStatus:
    name: str
    description: str
    type: str


@dataclass(frozen=True)
class StatusModel:
    object_name: str
    description: str
    statuses: dict  # name -> ModelStatus, in the file's order
    predecessors: dict = field(default_factory=dict)  # name -> frozenset of the statuses it may follow
    path: Path | None = None

    def successors(self, name: str) -> frozenset:
        return frozenset(other for other, before in self.predecessors.items() if name in before)

    @property
    def mandatory(self) -> frozenset:
        return frozenset(name for name, status in self.statuses.items() if status.type == MANDATORY)


def load_status_models(root: Path) -> dict:
    """object name -> StatusModel, from root/status_models/*.yaml (none when the folder is missing)."""
    folder = Path(root) / "status_models"
    models = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        model = parse_status_model(path)
        if model.object_name in models:
            raise ConfigError(path, None, "object", f"object {model.object_name!r} already has a status model, in "
                                                    f"{models[model.object_name].path}")
        models[model.object_name] = model
    return models


def _name(doc, keys, value, what) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS or value != value.strip():
        raise doc.error(keys, f"{what} must be a text of 1 to {MAX_NAME_CHARS} characters without blanks around "
                              f"it, got {value!r}")
    return value


def parse_status_model(path: Path) -> StatusModel:
    doc = yamlfile.load(path)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), f"must be a mapping with {', '.join(sorted(MODEL_KEYS))}")
    for key in data:
        if key not in MODEL_KEYS:
            raise doc.error((key,), f"unknown setting {key!r} (known: {', '.join(sorted(MODEL_KEYS))})")
    object_name = _name(doc, ("object",), data.get("object", path.stem), "the object's name")
    statuses = _statuses(doc, data.get("statuses"))
    predecessors = _workflow(doc, data.get("workflow", []), statuses)
    if not any(status.type in (MANDATORY, STOP) for status in statuses.values()):
        raise doc.error(("statuses",), "no way to finish: an instance finishes when a STOP status is set or every "
                                       "MANDATORY one is, and this model has neither (only its timeout would end it)")
    return StatusModel(object_name, str(data.get("description", "")), statuses, predecessors, path)


def _statuses(doc, raw) -> dict:
    if not isinstance(raw, dict) or not raw:
        raise doc.error(("statuses",), "must be a mapping of status names to {description, type}, with at least one")
    statuses = {}
    for name, settings in raw.items():
        keys = ("statuses", name)
        _name(doc, keys, name, "a status name")
        if not isinstance(settings, dict):
            raise doc.error(keys, f"must be a mapping like {{description: ..., type: MANDATORY}}, got {settings!r}")
        for key in settings:
            if key not in STATUS_KEYS:
                raise doc.error(keys + (key,), f"unknown setting {key!r} (known: {', '.join(sorted(STATUS_KEYS))})")
        kind = settings.get("type")
        if kind not in STATUS_TYPES:
            raise doc.error(keys + ("type",), f"must be one of {', '.join(STATUS_TYPES)}, got {kind!r}")
        statuses[name] = ModelStatus(name, str(settings.get("description", "")), kind)
    return statuses


def _workflow(doc, raw, statuses) -> dict:
    if not isinstance(raw, list):
        raise doc.error(("workflow",), "must be a list like [[RUN, FINISHED], [FINISHED, ARCHIVED]]")
    predecessors = {name: set() for name in statuses}
    for index, row in enumerate(raw):
        keys = ("workflow", index)
        if not isinstance(row, list) or len(row) < 2:
            raise doc.error(keys, f"each entry is [status, statuses that may follow it...], got {row!r}")
        for position, name in enumerate(row):
            if name not in statuses:
                raise doc.error(keys + (position,), f"unknown status {name!r} (known: {', '.join(statuses)})")
        current, *following = row
        for position, name in enumerate(following, start=1):
            if name == current:
                raise doc.error(keys + (position,), f"status {name!r} cannot follow itself")
            predecessors[name].add(current)
    cycle = _cycle(predecessors)
    if cycle:
        raise doc.error(("workflow",), "the workflow has a cycle: " + " -> ".join(cycle) + "; a status is set at "
                                       "most once, so none of these could ever be set")
    return {name: frozenset(before) for name, before in predecessors.items()}


def _cycle(predecessors) -> list | None:
    """A cycle of the graph (as a path that ends where it starts), or None."""
    state = {}  # name -> "open" while on the path being walked, "done" after

    def walk(name, path):
        state[name] = "open"
        for before in sorted(predecessors[name]):
            if state.get(before) == "open":
                return [*path[path.index(before):], before] if before in path else [before, name, before]
            if before not in state:
                found = walk(before, [*path, before])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in predecessors:
        if name not in state:
            found = walk(name, [name])
            if found:
                return list(reversed(found))
    return None


def parse_statusek_settings(doc, section) -> bool:
    """fleet.yaml's `statusek: {open_create: true}`: whether /statusek/instance/create (the upstream
    service's reply shapes, api/statusek_compat.py) creates instances without a bearer token, as upstream
    does. Off unless said: anybody who can reach the API could then create instances."""
    if section is None:
        return False
    if not isinstance(section, dict):
        raise doc.error(("statusek",), f"must be a mapping like {{open_create: true}}, got {section!r}")
    for key in section:
        if key != "open_create":
            raise doc.error(("statusek", key), f"unknown setting {key!r} (known: open_create)")
    open_create = section.get("open_create", False)
    if not isinstance(open_create, bool):
        raise doc.error(("statusek", "open_create"), f"must be true or false, got {open_create!r}")
    return open_create

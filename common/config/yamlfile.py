"""YAML loading that remembers the line of every value, so config errors can name it."""

from pathlib import Path

import yaml

from common.errors import ConfigError


class Located:
    """A loaded document plus the line (1-based) where each path inside it was written."""

    def __init__(self, path: Path, data, lines: dict):
        self.path, self.data, self._lines = path, data, lines

    def line(self, *keys) -> int | None:
        # Fall back to the nearest enclosing node that has a line.
        keys = tuple(keys)
        while keys and keys not in self._lines:
            keys = keys[:-1]
        return self._lines.get(keys)

    def error(self, keys, message) -> ConfigError:
        return ConfigError(self.path, self.line(*keys), field_name(keys), message)


def field_name(keys) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _walk(node, path, lines):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _walk(value_node, path + (key_node.value,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines)


def load(path: Path) -> Located:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(path, mark.line + 1 if mark else None, None, f"invalid YAML: {exc.problem if hasattr(exc, 'problem') else exc}") from None
    lines: dict = {}
    if node is not None:
        _walk(node, (), lines)
    return Located(path, data if data is not None else {}, lines)

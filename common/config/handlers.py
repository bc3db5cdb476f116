"""Importing the handler a bot file names: a failure is a config error of that bot file."""

import importlib

from common.config import yamlfile
from common.config.models import BotSpec, FleetConfig


def import_handler(spec: BotSpec):
    """The handler function of a bot; a ConfigError naming the bot file when it cannot be imported."""
    module_name, _, function_name = spec.handler.partition(":")
    doc = yamlfile.load(spec.path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error of any kind is a config problem of this bot
        raise doc.error(("handler",), f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise doc.error(("handler",), f"module {module_name!r} has no function {function_name!r}")
    return function


def check_handlers(config: FleetConfig):
    for spec in config.bots.values():
        if spec.handler:
            import_handler(spec)

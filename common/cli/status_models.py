"""`botfleet status-model list|show`: the status models of config/status_models (seed 001), with how many
instances of each are running and how those that ended finished."""

import sys

from common.cli.shared import connection, load_config, print_json
from common.config import yamlfile
from common.errors import BotfleetError
from common.status_models.instances import instance_counts
from common.status_models.reach import unreachable
from common.status_models.rules import requirement

COUNTED = ("open", "completed", "stopped", "timed_out")


def _counts(cfg) -> dict:
    """object name -> {open, completed, stopped, timed_out}."""
    counts = {name: dict.fromkeys(COUNTED, 0) for name in cfg.status_models}
    with connection(cfg) as conn:
        for row in instance_counts(conn):
            counts.setdefault(row["object_name"], dict.fromkeys(COUNTED, 0))[row["finish_reason"]] = row["instances"]
    return counts


def cmd_status_model_list(args):
    cfg = load_config(args)
    counts = _counts(cfg)
    if args.json:
        print_json([{"object": name, "statuses": len(model.statuses), "instances": counts[name]}
                    for name, model in sorted(cfg.status_models.items())])
        return
    if not cfg.status_models:
        print(f"no status models in {cfg.root / 'status_models'}")
    for name, model in sorted(cfg.status_models.items()):
        seen = counts[name]
        print(f"{name:<32} {len(model.statuses)} statuses   instances: {seen['open']} open, {seen['completed']} "
              f"completed, {seen['stopped']} stopped, {seen['timed_out']} timed out")


def cmd_status_model_show(args):
    cfg = load_config(args)
    model = cfg.status_models.get(args.object)
    if model is None:
        raise BotfleetError(f"there is no status model for object {args.object!r} (known: "
                            f"{', '.join(sorted(cfg.status_models)) or 'none'})")
    statuses = [{"name": s.name, "type": s.type, "description": s.description, "when": requirement(model, s.name),
                 "follows": sorted(model.predecessors[s.name])} for s in model.statuses.values()]
    if args.json:
        print_json({"object": model.object_name, "description": model.description, "file": str(model.path),
                    "statuses": statuses, "instances": _counts(cfg)[model.object_name]})
        return
    print(f"{model.object_name}: {model.description}  ({model.path})")
    for status in statuses:
        print(f"  {status['name']:<24} {status['type']:<10} {status['when']:<36} {status['description']}")


def warn_unreachable(cfg) -> int:
    """`config check`'s warnings (not errors: the model still works) about statuses a model can never set,
    each naming its file, line and status; how many there were."""
    warned = 0
    for name, model in sorted(cfg.status_models.items()):
        dead = unreachable(model)
        doc = yamlfile.load(model.path) if dead else None
        for status, why in dead.items():
            print(f"botfleet: warning: {model.path}:{doc.line('statuses', status)}: statuses.{status}: status "
                  f"{status!r} of {name!r} can never be set: {why}", file=sys.stderr)
            warned += 1
    return warned


def add_parsers(sub, command):
    group = sub.add_parser("status-model", help="status models (seed 001) and their instances").add_subparsers(
        dest="sub", required=True)
    p = command(group, "list", cmd_status_model_list, "every status model, with its instances by how they finished")
    p.add_argument("--json", action="store_true")
    p = command(group, "show", cmd_status_model_show, "one model's statuses, their types and what they follow")
    p.add_argument("object", help="the object's name, e.g. '2-POINT LINE TASK'")
    p.add_argument("--json", action="store_true")

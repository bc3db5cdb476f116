"""The 3-state pipeline both runs drive: <metaservice>/pipe, 1 a -> 2 b -> 3 c (final)."""

from pathlib import Path

TICKET_TYPE = "pipe"


def bot_names(metaservice: str, ticket_type: str = TICKET_TYPE) -> list[str]:
    return [f"{metaservice}-{ticket_type}-1-a", f"{metaservice}-{ticket_type}-2-b", f"{metaservice}-{ticket_type}-3-c"]


def write_config(root: Path, metaservice: str, fleet_yaml: str, handler: str, ticket_types=(TICKET_TYPE,)):
    """A config folder at `root`: fleet.yaml as given, the pipe type (or several types shaped as it is, named
    `ticket_types`), and their three bots; states 1 and 2 run `handler`, the final state's bot has none."""
    (root / "ticket_types" / metaservice).mkdir(parents=True)
    (root / "bots").mkdir()
    (root / "fleet.yaml").write_text(fleet_yaml)
    for ticket_type in ticket_types:
        (root / "ticket_types" / metaservice / f"{ticket_type}.yaml").write_text(
            "lifetime: 1h\nnotification_frequency: 1h\nretention: 1d\n"
            "states:\n  - {code: 1, name: a}\n  - {code: 2, name: b}\n  - {code: 3, name: c, final: true}\n"
            "transitions: [[1, 2], [2, 3]]\n")
        *working, final = bot_names(metaservice, ticket_type)
        for name in working:
            (root / "bots" / f"{name}.yaml").write_text(f"handler: {handler}\n")
        (root / "bots" / f"{final}.yaml").write_text("# final state: no handler\n")

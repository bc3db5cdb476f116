"""Writing the config's ticket types, status codes and bots to their tables, for the API and SQL readers."""

import psycopg

from common.errors import BotfleetError
from common.store import sql


def _add_missing_people(conn, people):
    """The users and groups of fleet.yaml's `people:` that do not exist yet; existing ones are left as they are."""
    for name, user in (people or {}).get("users", {}).items():
        if not conn.execute(sql.KNOWN_TIME_ZONE, {"tz": user["tz"]}).fetchone()["known"]:
            raise BotfleetError(f"fleet.yaml: people.users.{name}.tz: unknown time zone {user['tz']!r} "
                                f"(use a name like Europe/Berlin or UTC)")
        start, end = user["window"] or (None, None)
        conn.execute(sql.ADD_USER_IF_MISSING, {"name": name, "email": user["email"], "window_start": start,
                                               "window_end": end, "tz": user["tz"]})
    for name, members in (people or {}).get("groups", {}).items():
        if conn.execute(sql.ADD_GROUP, {"name": name}).fetchone():  # only a group that did not exist gets them
            conn.execute(sql.ADD_MEMBERS, {"group": name, "users": members})


def sync_status_models(conn, models):
    """The objects and statuses of config/status_models, so that an instance's events name their ids. A full
    sync writes them, and so does the API when it starts, which is what creates instances of them."""
    for model in models.values():
        object_id = conn.execute(sql.UPSERT_STATUS_OBJECT, {"object_name": model.object_name,
                                                            "description": model.description}).fetchone()["id"]
        for status in model.statuses.values():
            conn.execute(sql.UPSERT_OBJECT_STATUS, {"object_id": object_id, "name": status.name,
                                                    "description": status.description, "type": status.type})


def sync_config(conn, config, bot_names=None):
    """Write ticket types, status codes and bots to the database, for API and SQL readers."""
    # A bot syncs only its own type and row: dozens of bots starting at once would otherwise all
    # queue on the same rows.
    wanted = None if bot_names is None else {(s.metaservice, s.ticket_type) for s in config.bots.values()
                                             if s.name in bot_names}
    with conn.transaction():
        for ticket_type in [*config.types.values(), *config.builtin_types.values()]:
            if wanted is not None and ticket_type.key not in wanted:
                continue
            conn.execute(sql.UPSERT_TICKET_TYPE, {
                "metaservice": ticket_type.metaservice, "name": ticket_type.name,
                "description": ticket_type.description, "initial_state": ticket_type.initial,
                "lifetime_s": ticket_type.lifetime_s,
                "notification_frequency_s": ticket_type.notification_frequency_s,
                "retention_s": ticket_type.retention_s, "group_role": ticket_type.group_role,
                "exclusive": ticket_type.exclusive, "runs_when_locked": ticket_type.runs_when_locked,
                "callback_url": ticket_type.callback_url,
            })
            for state in ticket_type.states.values():
                following = ticket_type.next_states(state.code)
                conn.execute(sql.UPSERT_STATUS_CODE, {
                    "metaservice": ticket_type.metaservice, "ticket_type": ticket_type.name,
                    "code": state.code, "name": state.name, "description": state.description,
                    "final": state.final, "normal_next": following[0] if following else None,
                    "alternates": psycopg.types.json.Jsonb(list(following[1:])),
                })
        if bot_names is None:  # a full sync: bots no longer configured are no longer expected
            conn.execute(sql.DELETE_UNCONFIGURED_BOTS, {"names": sorted(config.bots)})
            _add_missing_people(conn, config.people)
            sync_status_models(conn, config.status_models)
        for spec in config.bots.values():
            if bot_names is None or spec.name in bot_names:
                conn.execute(sql.UPSERT_BOT, {
                    "name": spec.name, "metaservice": spec.metaservice, "ticket_type": spec.ticket_type,
                    "state": spec.state, "state_name": spec.state_name, "replicas": spec.replicas,
                    "hosts": config.hosts_of(spec.name),
                })

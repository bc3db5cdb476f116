"""A ticket type's two run-time settings (the seed's administration panel): lifetime and notification
frequency. The YAML value is the default; an override in the database wins, and the running bots read it
with every ticket they create and every round they send, without a restart."""

from common.config.durations import parse_duration_s
from common.errors import BotfleetError
from common.store import sql

UNSET = object()


def _seconds(value, what):
    if value is UNSET or value is None:
        return value
    try:
        seconds = parse_duration_s(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        raise BotfleetError(f"{what}: {exc}") from None
    if seconds <= 0:
        raise BotfleetError(f"{what} must be longer than zero, got {value!r}")
    return seconds


def type_settings(conn, config, key=None) -> list[dict]:
    """Each type's YAML values, overrides and the values in force; one type if `key` (metaservice, name)."""
    metaservice, name = key if key else (None, None)
    if key:
        config.ticket_type(metaservice, name)  # an error naming the type when there is none
    return conn.execute(sql.TYPE_SETTINGS, {"metaservice": metaservice, "ticket_type": name}).fetchall()


def set_type_settings(conn, config, key, *, lifetime=UNSET, notification_frequency=UNSET) -> dict:
    """Override a type's lifetime and/or notification frequency (None: back to the YAML value). A new lifetime
    applies to the open tickets too, counted from their creation; a new frequency from each ticket's next round."""
    metaservice, name = key
    current = type_settings(conn, config, key)
    if not current:
        raise BotfleetError(f"ticket type {metaservice}/{name} is not in the database yet: run `botfleet db upgrade`")
    lifetime_s = _seconds(lifetime, "--lifetime")
    frequency_s = _seconds(notification_frequency, "--notification-frequency")
    with conn.transaction():
        row = conn.execute(sql.SET_TYPE_OVERRIDES, {
            "metaservice": metaservice, "ticket_type": name,
            "lifetime_s": current[0]["lifetime_override_s"] if lifetime_s is UNSET else lifetime_s,
            "frequency_s": (current[0]["notification_frequency_override_s"] if frequency_s is UNSET
                            else frequency_s)}).fetchone()
        if lifetime_s is not UNSET:
            conn.execute(sql.REDATE_DEADLINES, {"metaservice": metaservice, "ticket_type": name,
                                                "lifetime_s": row["lifetime_s"]})
        conn.execute(sql.WAKE_TYPE_TIMERS, {"metaservice": metaservice, "ticket_type": name})
    return type_settings(conn, config, key)[0]

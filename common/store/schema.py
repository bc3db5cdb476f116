"""The database schema as SQLAlchemy Core tables: the reference the Alembic migrations are checked against.

Runtime queries live in common/store/sql.py; these tables exist for migrations, `alembic check` and readers.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, UUID

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

TZ = TIMESTAMP(timezone=True)

tickets = Table(
    "tickets", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("metaservice", Text, nullable=False),
    Column("ticket_type", Text, nullable=False),
    Column("state", Integer, nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("creator", Text),
    Column("group_role", Text),
    Column("assigned_user", Text),
    Column("parent_id", BigInteger),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("state_entered_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("deadline_at", TZ),
    Column("next_reminder_at", TZ),
    # When the state's bot should next look at the ticket: now for fresh work, later for waits,
    # retry backoff and held leases, 'infinity' while it waits for another ticket.
    Column("due_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("waiting_for", BigInteger),
    # Set (under the row lock) by any ticket that starts waiting for this one, so that closing it
    # knows whether anyone must be woken without looking.
    Column("has_waiters", Boolean, nullable=False, server_default=text("false")),
    Column("lease_owner", Text),
    Column("lease_expires_at", TZ),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Bumped by every applied outcome: the optimistic version that makes a retried step a no-op.
    Column("step", Integer, nullable=False, server_default=text("0")),
    Column("closed_at", TZ),
    Column("timed_out_at", TZ),  # when its lifetime's timeout was handled (once)
    Column("stuck_reported_at", TZ),  # when its stay in this state was reported stuck (once per stay)
    Column("start_after", TZ),  # created with a later start: sleeping until then
    Column("callback_url", Text),  # its state changes are POSTed here (besides its type's callback_url)
    # A job's own fields (POST /job), never part of its instruction (the payload).
    Column("job_name", Text),
    Column("object_type", Text),
    Column("object_id", Text),
)
Index("ix_tickets_object", tickets.c.object_type, tickets.c.object_id, postgresql_where=text("object_type IS NOT NULL"))
Index("ix_tickets_claim", tickets.c.metaservice, tickets.c.ticket_type, tickets.c.state, tickets.c.due_at,
      postgresql_where=text("closed_at IS NULL"))
Index("ix_tickets_closed", tickets.c.metaservice, tickets.c.ticket_type, tickets.c.state, tickets.c.closed_at,
      postgresql_where=text("closed_at IS NOT NULL"))
Index("ix_tickets_waiting_for", tickets.c.waiting_for, postgresql_where=text("waiting_for IS NOT NULL"))
Index("ix_tickets_parent_id", tickets.c.parent_id, postgresql_where=text("parent_id IS NOT NULL"))
# The list's "created between" (the console): without it a day's tickets are looked for among millions.
Index("ix_tickets_created_at", tickets.c.created_at)
# One open error ticket per ticket: a later reason is added to it (sql.FOLD_ERROR_REASON).
Index("uq_tickets_open_error", tickets.c.parent_id, unique=True, postgresql_where=text(
    "metaservice = 'botfleet' AND ticket_type = 'error' AND closed_at IS NULL AND parent_id IS NOT NULL"))
# The open tickets of a state by the sooner of their lifetime's end and their next acceptance round or
# reminder: one index for both timers, so a round or a claim writes one entry fewer than with two.
Index("ix_tickets_timer", tickets.c.metaservice, tickets.c.ticket_type, tickets.c.state,
      func.least(tickets.c.next_reminder_at, tickets.c.deadline_at),
      postgresql_where=text("closed_at IS NULL AND timed_out_at IS NULL"))
# The open tickets of a state by how long they have been there, not yet reported stuck.
Index("ix_tickets_stuck", tickets.c.metaservice, tickets.c.ticket_type, tickets.c.state, tickets.c.state_entered_at,
      postgresql_where=text("closed_at IS NULL AND stuck_reported_at IS NULL"))

ticket_events = Table(
    "ticket_events", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("ticket_id", BigInteger, nullable=False),
    Column("step", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("from_state", Integer),
    Column("to_state", Integer),
    Column("at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("actor", Text),
    Column("detail", JSONB),
)
Index("ix_ticket_events_ticket_id", ticket_events.c.ticket_id)
# One outcome is applied once: a second attempt to record the same step fails. Reminders repeat within
# a step (each round is its own event), so they are left out.
Index("uq_ticket_events_step", ticket_events.c.ticket_id, ticket_events.c.step, ticket_events.c.kind, unique=True,
      postgresql_where=text("kind <> 'reminder'"))

status_codes = Table(
    "status_codes", metadata,
    Column("metaservice", Text, primary_key=True),
    Column("ticket_type", Text, primary_key=True),
    Column("code", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("final", Boolean, nullable=False),
    Column("normal_next", Integer),
    Column("alternates", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
)

ticket_types = Table(
    "ticket_types", metadata,
    Column("metaservice", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("initial_state", Integer, nullable=False),
    Column("lifetime_s", Float, nullable=False),
    Column("notification_frequency_s", Float, nullable=False),
    # `botfleet type set`: run-time overrides of the two YAML values above (NULL: the YAML value).
    Column("lifetime_override_s", Float),
    Column("notification_frequency_override_s", Float),
    Column("retention_s", Float, nullable=False),
    Column("group_role", Text),
    Column("callback_url", Text),  # each state change of its tickets is POSTed here (webhook_outbox)
    Column("exclusive", Boolean, nullable=False),
    Column("runs_when_locked", Boolean, nullable=False),
)

bots = Table(
    "bots", metadata,
    Column("name", Text, primary_key=True),
    Column("metaservice", Text, nullable=False),
    Column("ticket_type", Text, nullable=False),
    Column("state", Integer, nullable=False),
    Column("state_name", Text, nullable=False),
    Column("replicas", Integer, nullable=False, server_default=text("1")),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("hosts", ARRAY(Text)),  # the hosts that run the bot (`hosts:` in fleet.yaml); NULL: every host
)

# Each host's watchdog's latest verdict on each bot it runs (healthy, hung, fatal, ...), for
# `botfleet check`, status and metrics.
bot_health = Table(
    "bot_health", metadata,
    Column("bot_name", Text, primary_key=True),
    Column("host", Text, primary_key=True),
    Column("health", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", TZ, nullable=False),
    # The watchdog's restart backoff: the most restarts in a row of a process of the bot on this host, and
    # until when (real time) it restarts none of them again (NULL: it may now).
    Column("restarts_in_a_row", Integer, nullable=False, server_default=text("0")),
    Column("restart_backoff_until", TZ),
)

bot_processes = Table(
    "bot_processes", metadata,
    Column("instance_id", Text, primary_key=True),
    Column("bot_name", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Text, nullable=False),
    Column("started_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("heartbeat_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("stopped_at", TZ),
    Column("processed", BigInteger, nullable=False, server_default=text("0")),
    Column("failed", BigInteger, nullable=False, server_default=text("0")),
    Column("process_name", Text),  # supervisord's name of the process (the bot, or bot-N for replicas)
    # The last batch of stats this process had added to bot_stats: a batch sent again is not counted again.
    Column("stats_seq", BigInteger, nullable=False, server_default=text("0")),
    # Its control loop's turns so far, written with each heartbeat: an idle process turns a few times per
    # heartbeat, and one that spins on a due time in the past shows here.
    Column("loop_turns", BigInteger, nullable=False, server_default=text("0")),
    # Set by the process's own deregistration (a clean stop), not by retiring it: a restart after one is an
    # operator's, after none a crash.
    Column("deregistered", Boolean, nullable=False, server_default=text("false")),
)
# Not heartbeat_at: a heartbeat that changes no indexed column is a HOT update, which writes no index entry.
Index("ix_bot_processes_bot_name", bot_processes.c.bot_name)

watchdogs = Table(
    "watchdogs", metadata,
    Column("name", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("heartbeat_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("last_check_at", TZ),
    # Why the host's supervisord did not answer this watchdog's last check (NULL: it did).
    Column("supervisor_error", Text),
)

# Leases for fleet-wide duties: one holder at a time among the watchdogs of all hosts.
fleet_leases = Table(
    "fleet_leases", metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", TZ, nullable=False),
)

watchdog_events = Table(
    "watchdog_events", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("watchdog", Text, nullable=False),
    Column("bot", Text),
    Column("action", Text, nullable=False),
    Column("reason", Text, nullable=False),
)
Index("ix_watchdog_events_bot", watchdog_events.c.bot, watchdog_events.c.at)

# Restarts per bot and reason (the part of the event's reason before the first colon), counted as the
# events are written: the counter botfleet_watchdog_restarts_total reads, which never goes down.
watchdog_restart_totals = Table(
    "watchdog_restart_totals", metadata,
    Column("bot", Text, primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("restarts", BigInteger, nullable=False),
)

# Cumulative per-bot counters and histogram buckets; bots add their deltas with each heartbeat,
# so the numbers only grow, whatever happens to the processes that counted them.
bot_stats = Table(
    "bot_stats", metadata,
    Column("bot_name", Text, primary_key=True),
    Column("transitions", BigInteger, nullable=False, server_default=text("0")),
    Column("handler_failures", BigInteger, nullable=False, server_default=text("0")),
    Column("error_tickets", BigInteger, nullable=False, server_default=text("0")),
    Column("timeouts", BigInteger, nullable=False, server_default=text("0")),
    Column("reminders", BigInteger, nullable=False, server_default=text("0")),
    # {upper bound: count}, "+Inf" for the rest: a change of bounds never mixes counts of two buckets.
    Column("hop_buckets", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("hop_sum_s", Float, nullable=False, server_default=text("0")),
    Column("handler_buckets", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("handler_sum_s", Float, nullable=False, server_default=text("0")),
    Column("notifications_rejected", BigInteger, nullable=False, server_default=text("0")),
)

# bot_stats as it stood in each minute of business time (`at`: the minute), an hour of it: the console draws a bot's
# last minutes from the differences of consecutive rows (common/fleet/stats_history.py).
bot_stats_history = Table(
    "bot_stats_history", metadata,
    Column("bot_name", Text, primary_key=True),
    Column("at", TZ, primary_key=True),
    Column("transitions", BigInteger, nullable=False),
    Column("hop_buckets", JSONB, nullable=False),
)

# One row: the oldest code revision (SCHEMA_HEAD) that can run against this schema. Migrations that
# only add leave it; migrations that remove or change set it to themselves (expand, then contract).
botfleet_schema = Table(
    "botfleet_schema", metadata,
    Column("id", Boolean, primary_key=True, server_default=true()),
    Column("compatible_since", Text, nullable=False),
    CheckConstraint("id", name="botfleet_schema_one_row"),
)

# One row: how far botfleet_now(), the one clock every statement reads, runs ahead of the database's
# own clock. Zero unless shifted (common/store/clock.py), as tests do to run hours in seconds.
botfleet_clock = Table(
    "botfleet_clock", metadata,
    Column("id", Boolean, primary_key=True, server_default=true()),
    Column("offset_s", Float, nullable=False, server_default=text("0")),
    CheckConstraint("id", name="botfleet_clock_one_row"),
)

# The fleet's lock: open, ops_only (set by an admin) or closed (by the fleet, while the exclusive ticket
# holder_ticket runs; `before` is what it returns to). A trigger of migration 0020 releases it.
fleet_lock = Table(
    "fleet_lock", metadata,
    Column("id", SmallInteger, primary_key=True, server_default=text("1")),
    Column("state", Text, nullable=False, server_default=text("'open'")),
    Column("reason", Text),
    Column("set_by", Text),
    Column("set_at", TZ),
    Column("holder_ticket", BigInteger),
    Column("before", JSONB),
    CheckConstraint("id = 1", name="ck_fleet_lock_one_row"),
    CheckConstraint("state IN ('open', 'ops_only', 'closed')", name="ck_fleet_lock_state"),
)

# Webhooks to deliver: one row per state change and receiver, written by a trigger of migration 0021 in
# the transaction of the change; delivered in order per ticket and receiver, retried, then failed.
webhook_outbox = Table(
    "webhook_outbox", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("ticket_id", BigInteger, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("metaservice", Text, nullable=False),
    Column("ticket_type", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("from_state", Integer),
    Column("to_state", Integer),
    Column("at", TZ, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_try_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("last_error", Text),
    Column("done_at", TZ),
    Column("lease_until", TZ),  # claimed for a POST until then, on real time (statement_timestamp())
    CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_webhook_outbox_state"),
)
Index("ix_webhook_outbox_pending", webhook_outbox.c.ticket_id, webhook_outbox.c.url, webhook_outbox.c.id,
      postgresql_where=text("state = 'pending'"))
Index("ix_webhook_outbox_ticket_id", webhook_outbox.c.ticket_id)  # a ticket's deliveries (the console)
Index("ix_webhook_outbox_done_at", webhook_outbox.c.done_at, postgresql_where=text("done_at IS NOT NULL"))

# Status models (seed 001): the objects and statuses of config/status_models (synced), instances known by
# a token, and the statuses set on each, at most once.
status_objects = Table(
    "status_objects", metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("object_name", Text, nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
)

object_statuses = Table(
    "object_statuses", metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("object_id", Integer, ForeignKey("status_objects.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("type", Text, nullable=False),
    UniqueConstraint("object_id", "name"),
    CheckConstraint("type IN ('MANDATORY', 'OPTIONAL', 'STOP')", name="ck_object_statuses_type"),
)

status_instances = Table(
    "status_instances", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("token", UUID, nullable=False, unique=True, server_default=text("gen_random_uuid()")),
    Column("object_id", Integer, ForeignKey("status_objects.id"), nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("timeout_s", Integer, nullable=False),
    Column("deadline_at", TZ, nullable=False),
    Column("finished_at", TZ),
    Column("finish_reason", Text),
    Column("stop_status", Text),
    Column("version", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("timeout_s > 0", name="ck_status_instances_timeout"),
    CheckConstraint("finish_reason IN ('completed', 'stopped', 'timed_out')", name="ck_status_instances_reason"),
)
Index("ix_status_instances_deadline", status_instances.c.deadline_at, postgresql_where=text("finished_at IS NULL"))

status_events = Table(
    "status_events", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("instance_id", BigInteger, ForeignKey("status_instances.id", ondelete="CASCADE"), nullable=False),
    Column("status_name", Text, nullable=False),
    Column("message", Text),
    Column("at", TZ, nullable=False, server_default=text("botfleet_now()")),
    UniqueConstraint("instance_id", "status_name"),
)

# People: a ticket's group_role names a group, whose members are asked to accept it; only a member may
# be its assignee. A user's delivery window (in their time zone) holds back their email until it opens.
users = Table(
    "users", metadata,
    Column("name", Text, primary_key=True),
    Column("email", Text),
    Column("window_start", Time),
    Column("window_end", Time),
    Column("tz", Text, nullable=False, server_default=text("'UTC'")),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
)

groups = Table(
    "groups", metadata,
    Column("name", Text, primary_key=True),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
)

group_members = Table(
    "group_members", metadata,
    Column("group_name", Text, ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True),
    Column("user_name", Text, ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
)
Index("ix_group_members_user_name", group_members.c.user_name)

# Every message to a user: the in-app inbox reads it; the delivery process mails it. Written in the same
# transaction as the outcome or timer round that causes it (an outbox): none for a step that did not
# commit, none lost for one that did. email_state: none (no address) | pending | sent | undeliverable |
# dropped (its reason was gone when it would have been sent) | merged (a later round of its ticket went instead).
notifications = Table(
    "notifications", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("user_name", Text, nullable=False),
    Column("ticket_id", BigInteger),
    Column("kind", Text, nullable=False),  # acceptance | reminder | timeout | message | ...
    Column("text", Text, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("read_at", TZ),
    Column("email_state", Text, nullable=False),
    Column("email_due_at", TZ),
    Column("email_attempts", Integer, nullable=False, server_default=text("0")),
    Column("email_error", Text),
    Column("email_sent_at", TZ),
    Column("email_stuck_reported_at", TZ),  # pending past mail.stuck_after: reported to the operators once
    # Claimed for a send until then, on real time (statement_timestamp()): not sent again meanwhile, even
    # if its bot died between sending it and marking it.
    Column("email_lease_until", TZ),
    # When it first became sendable (its user's delivery window open): mail.stuck_after counts from then.
    Column("email_sendable_at", TZ),
    Column("email_note", Text),  # why it was not mailed: dropped or merged
)
Index("ix_notifications_user_name", notifications.c.user_name, notifications.c.id)
Index("ix_notifications_ticket_id", notifications.c.ticket_id, postgresql_where=text("ticket_id IS NOT NULL"))
Index("ix_notifications_email_due_at", notifications.c.email_due_at, postgresql_where=text("email_state = 'pending'"))


def _archive(name, key):
    """Rows of a live table kept whole as JSON, so the archive never has to follow the live table's columns."""
    archive = Table(name, metadata, Column(key, BigInteger, nullable=False), Column("row", JSONB, nullable=False),
                    Column("archived_at", TZ, nullable=False, server_default=text("botfleet_now()")))
    Index(f"ix_{name}_{key}", archive.c[key])
    return archive


# Closed tickets past their retention, with their history, when their type says `on_retention: archive`.
tickets_archive = _archive("tickets_archive", "id")
ticket_events_archive = _archive("ticket_events_archive", "ticket_id")

# Messages between bots (send_bot_notification): written with the sender's step, then a NOTIFY to the
# receiving bot, which hands each to its handler module's on_<kind> function and records the outcome
# (handled, or rejected with the error).
bot_messages = Table(
    "bot_messages", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("to_bot", Text, nullable=False),
    Column("ticket_id", BigInteger),
    Column("kind", Text, nullable=False),
    Column("body", JSONB, nullable=False),
    Column("sender", Text),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("handled_at", TZ),
    Column("outcome", Text),
    Column("error", Text),
    # Taken by a process of the bot until then (real time): its on_<kind> runs outside any transaction, and a
    # message whose taker died is taken again after this.
    Column("taken_by", Text),
    Column("taken_until", TZ),
)
Index("ix_bot_messages_to_bot", bot_messages.c.to_bot, bot_messages.c.id, postgresql_where=text("handled_at IS NULL"))

# The HTTP API's bearer tokens: only a SHA-256 of each (they are random and long, so a slow hash buys
# nothing), with the scopes it grants. A revoked token stays listed.
api_tokens = Table(
    "api_tokens", metadata,
    Column("name", Text, primary_key=True),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("revoked_at", TZ),
    Column("user_name", Text),  # the user it acts as (creates as, accepts as); NULL: none
)

# POST /tickets with an Idempotency-Key: the ticket the first request made, per token, so a retry gets
# it back instead of a second ticket.
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("token_name", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("ticket_id", BigInteger, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=text("botfleet_now()")),
)

workers = Table(
    "workers", metadata,
    Column("name", Text, primary_key=True),
    Column("session", Text, nullable=False, server_default=text("''")),
    Column("ticket_id", BigInteger),
    Column("first_seen_at", TZ, nullable=False, server_default=text("botfleet_now()")),
    Column("last_contact_at", TZ, nullable=False, server_default=text("botfleet_now()")),
)

ticket_progress = Table(
    "ticket_progress", metadata,
    Column("ticket_id", BigInteger, primary_key=True),
    Column("message", Text, primary_key=True),
    Column("at", TZ, nullable=False, server_default=text("botfleet_now()")),
)

worker_state_stats = Table(
    "worker_state_stats", metadata,
    Column("metaservice", Text, primary_key=True),
    Column("ticket_type", Text, primary_key=True),
    Column("state", Integer, primary_key=True),
    Column("abandoned", BigInteger, nullable=False, server_default=text("0")),
    Column("stalled", BigInteger, nullable=False, server_default=text("0")),
)

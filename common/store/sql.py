"""Every runtime SQL statement botfleet runs; the only module with PostgreSQL-specific query text.

Statements take psycopg named parameters. Batched statements take parallel arrays and `unnest`
them, so that a batch of tickets costs one round trip while each ticket's row change, its event
rows and its NOTIFY still commit together.
"""

from psycopg.sql import SQL, Composed, Identifier

from common.config.builtin import ERROR_METASERVICE, ERROR_TYPE, MAIL_TICKET_TYPE, STATUS_TICKET_TYPE

# A bot LISTENs on one channel per (metaservice, ticket type, state). The payload is always empty:
# PostgreSQL folds identical notifications of one transaction into one, so a batch wakes a bot once.
CHANNEL_SQL = "'bf.' || {t}.metaservice || '.' || {t}.ticket_type || '.' || {t}.state"


def channel(metaservice: str, ticket_type: str, state: int) -> str:
    return f"bf.{metaservice}.{ticket_type}.{state}"


# Every bot listens here too: the fleet lock's changes (a lock that opens lets them claim again), and
# TIMERS: business time moved (a clock shift, a type's new lifetime), so every bot looks at its timers again.
LOCK_CHANNEL = "bf.lock"
TIMERS = "timers"

# The status model expiry bot's channel: a new instance may end sooner than anything it waits for.
STATUS_CHANNEL = channel(STATUS_TICKET_TYPE.metaservice, STATUS_TICKET_TYPE.name, STATUS_TICKET_TYPE.initial)

# The built-in mail bot's channel: a notification with mail to send wakes it.
MAIL_CHANNEL = channel(MAIL_TICKET_TYPE.metaservice, MAIL_TICKET_TYPE.name, MAIL_TICKET_TYPE.initial)


def compact(statement: str) -> str:
    """A long statement as it is sent: without its comments and runs of blanks (one blank, or one newline),
    nor blanks after a comma or an opening parenthesis, before a closing one, or around '=': SQL needs none.
    psycopg keeps its parse of a statement of up to 4 KiB (MAX_CACHED_STATEMENT_LENGTH) and parses a longer
    one again on every execute, which costs the API's create a tenth of its time. Quoted text is kept."""
    kept, index, quote = [], 0, None
    while index < len(statement):
        char = statement[index]
        if quote is not None:
            kept.append(char)
            quote = None if char == quote else quote  # '' inside a string closes and reopens it: same text
        elif char in "'\"":
            kept.append(char)
            quote = char
        elif statement.startswith("--", index):
            index = statement.find("\n", index)
            index = len(statement) if index < 0 else index
            continue
        elif char.isspace() and kept and kept[-1] in ",(=":
            pass
        elif char in ")=" and kept and kept[-1].isspace():
            kept[-1] = char
        elif char.isspace():
            # A newline stays one: it is what joins 'two' 'strings' on two lines into one in SQL.
            if kept and kept[-1].isspace():
                kept[-1] = "\n" if "\n" in (kept[-1], char) else kept[-1]
            elif kept:
                kept.append("\n" if char == "\n" else " ")
        else:
            kept.append(char)
        index += 1
    return "".join(kept).strip()


def listen(channel_name: str) -> Composed:
    """LISTEN takes no parameters: the channel is quoted as an identifier."""
    return SQL("LISTEN {}").format(Identifier(channel_name))


TICKET_COLUMNS = """id, metaservice, ticket_type, state, payload, creator, group_role, assigned_user,
    parent_id, created_at, state_entered_at, deadline_at, waiting_for, lease_owner,
    attempts, step, closed_at"""
# What reading a ticket returns: its columns and the two that only a created ticket's caller sets.
_READ_COLUMNS = TICKET_COLUMNS + ", start_after, callback_url"
# The lease of a ticket an external worker holds (seed 002) is this and the worker's name.
WORKER_LEASE_PREFIX = "worker:"
_WORKER_LEASE = f"'{WORKER_LEASE_PREFIX}%%'"  # LIKE this: held by some worker

# A bot's work connection. Its statements are prepared and their plans cached; a plan cached while
# the tickets table was empty would otherwise seq-scan it forever once it holds a million rows.
# Every bot statement has an index that serves it, so seq scans are simply ruled out (cheaper than
# re-planning every claim). Commits do not wait for the disk unless a statement says so: a claim or
# heartbeat lost in a crash costs nothing, while writing outcomes switches durability back on.
# JIT is off too: these are short statements, and with seq scans priced out of reach the planner would
# otherwise think a scan of a one-row table worth compiling.
BOT_SESSION_SETUP = "SET enable_seqscan = off; SET jit = off; SET synchronous_commit = off"

# A bot's control loop must never wait long on anything, or it stops heartbeating and the watchdog
# kills a healthy bot: a row lock held by a person or a tool gives up after `lock_timeout`, and any
# statement after `statement_timeout`; the loop tries again later.
BOT_SESSION_TIMEOUTS = """SELECT set_config('lock_timeout', %(lock_timeout_ms)s::text, false),
       set_config('statement_timeout', %(statement_timeout_ms)s::text, false)"""
# The API's, the watchdog's and the CLI's sessions have limits of their own (common/store/connect.py).
SESSION_TIMEOUTS = BOT_SESSION_TIMEOUTS

# The one clock (common/store/clock.py). A shift changes every business time at once: each bot looks
# again at its timers (FLEET_CHANNEL's 'timers'), since what it had set was counted on the old clock.
CLOCK_NOW = "SELECT botfleet_now() AS now"
CLOCK_SHIFT = f"""UPDATE botfleet_clock SET offset_s = offset_s + %(by_s)s
RETURNING offset_s, (SELECT count(*) FROM (SELECT pg_notify('{LOCK_CHANNEL}', '{TIMERS}')) n) AS notified"""

# Liveness (heartbeats, leases, the watchdog's own lease and the age of its verdicts, workers' stall
# timers) is real elapsed time: the server's clock as the statement started, never botfleet_now(), which
# a test or an operator shifts. A shift of business time must not make a live process look dead, nor
# free a ticket that a live handler still runs. statement_timestamp() is stable within a statement, so an
# index can compare with it, as with `(SELECT botfleet_now())`.
LIVE_NOW = "statement_timestamp()"

SCHEMA_REVISION = "SELECT version_num FROM alembic_version"
SCHEMA_COMPATIBLE_SINCE = "SELECT compatible_since FROM botfleet_schema"

# `botfleet db upgrade` (and `up`): one at a time per database, whatever the host (common/store/migrate.py).
LOCK_UPGRADES = "SELECT pg_advisory_lock(hashtext('botfleet db upgrade'))"

# How a notification row is made for user u (joined from users): mailed if the user has an address and the
# fleet mails at all (`mail`: a mail: section in fleet.yaml). Without one, nothing would ever send it: it is
# done with at once, instead of showing "mail pending" for ever and never being pruned.
_NOTIFICATION_EMAIL = """CASE WHEN u.email IS NULL OR NOT %(mail)s THEN 'none' ELSE 'pending' END,
       CASE WHEN u.email IS NOT NULL AND %(mail)s THEN (SELECT botfleet_now()) END"""


# What an error ticket's rounds add to their text: what went wrong, from its payload (the stuck ticket, its
# state and the reason; a mail problem's reason names the notification), so that an operator need not look first.
_ERROR_SAYS = f"""CASE WHEN rc.metaservice = '{ERROR_METASERVICE}' AND rc.ticket_type = '{ERROR_TYPE}' THEN
    format('. What went wrong: %%s%%s', CASE WHEN rc.payload ? 'state' THEN format('ticket %%s (%%s/%%s) in state %%s: ',
        rc.payload->>'ticket_id', rc.payload->>'metaservice', rc.payload->>'ticket_type', rc.payload->>'state') END,
        coalesce(rc.payload->>'reason', 'no reason given')) ELSE '' END"""


def _send_rounds(rounds: str, errors_say: bool = True) -> str:
    """CTEs that send one acceptance round or reminder for each row of the CTE `rounds` (id, step, state,
    metaservice, ticket_type, group_role, assigned_user, payload): while nobody has accepted, every member of
    the ticket's group is asked to; once someone has, the assignee is reminded. Each round with anyone to tell
    gets a 'reminder' event naming them. `errors_say`: an error ticket's rounds say what went wrong."""
    return f"""recipients AS (
    SELECT r.*, 'reminder' AS kind, r.assigned_user AS user_name FROM {rounds} r WHERE r.assigned_user IS NOT NULL
    UNION ALL
    SELECT r.*, 'acceptance', m.user_name FROM {rounds} r JOIN group_members m ON m.group_name = r.group_role
    WHERE r.assigned_user IS NULL
), sent AS (
    INSERT INTO notifications (user_name, ticket_id, kind, text, email_state, email_due_at, created_at)
    SELECT rc.user_name, rc.id, rc.kind,
           CASE rc.kind
               WHEN 'acceptance' THEN format('Ticket %%s (%%s/%%s, %%s) waits for someone of group %%s to accept it: '
                                             'botfleet ticket accept %%s %%s', rc.id, rc.metaservice, rc.ticket_type,
                                             coalesce(sc.name, 'state ' || rc.state), rc.group_role, rc.id, rc.user_name)
               ELSE format('Reminder: ticket %%s (%%s/%%s, %%s) is yours and still open', rc.id, rc.metaservice,
                           rc.ticket_type, coalesce(sc.name, 'state ' || rc.state))
           END{' || ' + _ERROR_SAYS if errors_say else ''},
           {_NOTIFICATION_EMAIL}, (SELECT botfleet_now())
    FROM recipients rc JOIN users u ON u.name = rc.user_name
    LEFT JOIN status_codes sc ON sc.metaservice = rc.metaservice AND sc.ticket_type = rc.ticket_type
                             AND sc.code = rc.state
    RETURNING ticket_id, user_name, kind, email_state
), mail_wake AS (
    SELECT pg_notify('{MAIL_CHANNEL}', '') WHERE EXISTS (SELECT 1 FROM sent WHERE email_state = 'pending')
), sent_to AS (
    SELECT ticket_id, jsonb_agg(user_name ORDER BY user_name) AS users FROM sent GROUP BY ticket_id
), round_events AS (
    INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail, at)
    SELECT r.id, r.step, 'reminder', r.state, r.state, %(actor)s,
           jsonb_build_object('kind', CASE WHEN r.assigned_user IS NULL THEN 'acceptance' ELSE 'reminder' END,
                              'to', s.users), (SELECT botfleet_now())
    FROM {rounds} r JOIN sent_to s ON s.ticket_id = r.id
    RETURNING 1
), round_results AS (
    SELECT (SELECT count(*) FROM round_events) AS round_events, (SELECT count(*) FROM mail_wake) AS mail_wakes
)"""


# A ticket type's lifetime and notification frequency as the fleet uses them now: an operator's
# override (`botfleet type set`), else the YAML value synced to ticket_types, else the caller's.
def _type_setting(name: str) -> str:
    return f"""coalesce((SELECT coalesce({name}_override_s, {name}_s) FROM ticket_types
                      WHERE metaservice = %(metaservice)s AND name = %(ticket_type)s), %({name}_s)s)"""


# The fleet's lock (fleet_lock, one row) as FleetLock reads it, its names prefixed where it is read beside
# other columns.
_LOCK_FIELDS = {"state": "state", "reason": "reason", "set_by": "set_by", "set_at": "set_at",
                "holder_ticket": "holder_ticket", "returns_to": "before->>'state'"}


def _lock_columns(prefix: str = "") -> str:
    return ", ".join(f"{expression} AS {prefix}{name}" for name, expression in _LOCK_FIELDS.items())


# The one clock is botfleet_now() (migration 0009): the database's own, shifted only by tests. It is
# written `(SELECT botfleet_now())` in statements: an uncorrelated subquery runs once per statement,
# where a bare call would run for every row it touches (a thousand rows, a thousand calls).
def _create_tickets(gated: bool = False, planned: bool = False, errors_say: bool = False) -> str:
    """Insert tickets with their 'created' events, first acceptance rounds and NOTIFY, returning their rows.
    `gated`: only while the fleet is open, and every row (one, when nothing was inserted) also carries the
    fleet's lock as lock_state, lock_reason, ... FOR SHARE holds the lock's row until the insert commits, so
    a lock set meanwhile waits for it, and a create that started before a lock committed reads the lock
    as it is now (READ COMMITTED re-reads a row it had to wait for) and inserts nothing. `planned`: ids
    taken beforehand (%(ids)s, NEXT_TICKET_ID) or new ones. `errors_say`: an error ticket's first round
    says what went wrong. Each statement has only the parts its callers need, to stay short enough for
    psycopg's parse cache."""
    gate = f"gate AS (SELECT {_lock_columns('lock_')} FROM fleet_lock FOR SHARE), " if gated else ""
    # The API reads back the ticket it submitted; the fleet's own creates (children, batches) need only ids.
    rows = f"SELECT {'new.*' if gated else 'id'} FROM new, (SELECT count(*) FROM wake) w, round_results ORDER BY id"
    return compact(f"""
WITH {gate}clock AS (
    -- A ticket with a later start_after sleeps until then: its lifetime and reminders count from it.
    SELECT botfleet_now() AS at, greatest(botfleet_now(), %(start_after)s::timestamptz) AS starts
), new AS (
    INSERT INTO tickets ({"id, " if planned else ""}metaservice, ticket_type, state, payload, creator, group_role, parent_id,
                         created_at, state_entered_at, deadline_at, next_reminder_at, due_at, start_after,
                         callback_url, job_name, object_type, object_id)
    SELECT {"coalesce((%(ids)s::bigint[])[n], nextval('tickets_id_seq')), " if planned else ""}%(metaservice)s,
           %(ticket_type)s, %(state)s, p, %(creator)s, %(group_role)s, %(parent_id)s,
           clock.at, clock.at, clock.starts + {_type_setting("lifetime")} * interval '1 second',
           -- The first acceptance round goes out with the ticket (below); its bot sends the next ones.
           -- A ticket without a group has nobody to ask and nobody to remind.
           -- No rounds for a job (`rounds`: a group, and not a job type).
           CASE WHEN %(rounds)s THEN clock.starts + {_type_setting("notification_frequency")} * interval '1 second' END,
           clock.starts, %(start_after)s, %(callback_url)s, %(job_name)s, %(object_type)s, %(object_id)s
    FROM jsonb_array_elements(%(payloads)s::jsonb) WITH ORDINALITY AS u(p, n), clock
    {"WHERE (SELECT lock_state FROM gate) = 'open'" if gated else ""}
    ORDER BY n
    RETURNING {_READ_COLUMNS}
), ev AS (
    INSERT INTO ticket_events (ticket_id, step, kind, to_state, actor, at)
    SELECT id, 0, 'created', state, %(creator)s, created_at FROM new
    RETURNING ticket_id
), created AS (
    -- Reading ev makes its 'created' events come first in each ticket's history, before the round's.
    SELECT new.* FROM new JOIN ev ON ev.ticket_id = new.id WHERE %(rounds)s
), {_send_rounds("created", errors_say=errors_say)}, wake AS (
    -- A ticket that sleeps (start_after) is not claimed now: its bot sets its timer for it instead.
    SELECT pg_notify(c, p) FROM (
        SELECT DISTINCT {CHANNEL_SQL.format(t='new')} AS c,
               CASE WHEN new.start_after > (SELECT at FROM clock) THEN '{TIMERS}' ELSE '' END AS p
        FROM new) ch
)
{f"SELECT * FROM gate LEFT JOIN ({rows}) t ON true" if gated else rows}
""")


CREATE_TICKETS = _create_tickets(planned=True)
# The fleet's error tickets (never planned children): their first round says what went wrong.
CREATE_ERROR_TICKETS = _create_tickets(errors_say=True)
# A ticket id taken before its ticket is created: a handler's child knows its id while the step is planned.
NEXT_TICKET_ID = "SELECT nextval('tickets_id_seq') AS id"
# A ticket from outside the fleet (the API): created only while the fleet is open.
SUBMIT_TICKETS = _create_tickets(gated=True)

# get_current_ticket_list: lease up to `limit` due tickets of one state to one bot process.
# SKIP LOCKED lets replicas claim side by side without waiting on each other. The lease runs on real time
# (LIVE_NOW); due_at moves on by as long in business time, which keeps held tickets out of the claims'
# index range while the clock is not shifted. A ticket whose lease a live owner renews is never claimed,
# whatever the business clock says, and neither is one the claiming process has in hand (`in_hand`: its
# handlers running, given up but still running, or written soon), even if its own lease lapsed because
# its heartbeats fell behind: a process never runs a ticket it already holds.
# The sooner of an open ticket's two timers, its lifetime's end and its next acceptance round or reminder:
# the expression of ix_tickets_timer, which the queries of either timer go through.
_TIMER = "least(next_reminder_at, deadline_at)"


def _claim(state_condition: str, due: str = "due_at <= (SELECT botfleet_now())", order: str = "due_at") -> str:
    return f"""
WITH due AS (
    SELECT id, lease_owner AS previous_owner
    FROM tickets
    WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND {state_condition}
      AND closed_at IS NULL AND {due}
      AND coalesce(lease_expires_at <= {LIVE_NOW}, true) AND id <> ALL(%(in_hand)s::bigint[])
    ORDER BY {order}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tickets t
    SET lease_owner = %(owner)s,
        lease_expires_at = {LIVE_NOW} + %(lease_s)s * interval '1 second',
        due_at = (SELECT botfleet_now()) + %(lease_s)s * interval '1 second'
    FROM due
    WHERE t.id = due.id
    -- read_at: the clock as the ticket was read, for the hop time and the handler's ctx.now().
    RETURNING {", ".join("t." + c.strip() for c in TICKET_COLUMNS.split(","))}, due.previous_owner,
              (SELECT botfleet_now()) AS read_at
), rescued AS (
    -- A ticket whose previous owner stopped renewing its lease: worth a line in the history.
    INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail)
    SELECT id, step, 'claimed', state, state, %(owner)s,
           jsonb_build_object('previous_owner', previous_owner)
    FROM claimed WHERE previous_owner IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT * FROM claimed
"""


# Only while the fleet is open, or locked for operations for a type that runs_when_locked.
CLAIM = _claim("state = %(state)s", due="""due_at <= (SELECT botfleet_now())
      AND ((SELECT state FROM fleet_lock) = 'open'
           OR (%(runs_when_locked)s AND (SELECT state FROM fleet_lock) = 'ops_only'))""")
# A ticket of an exclusive type is claimed only as the holder of the closed fleet, once no other ticket
# is leased: the work in hand finished first. Nothing else is claimed meanwhile (CLAIM's gate).
CLAIM_EXCLUSIVE = _claim("state = %(state)s", due=f"""due_at <= (SELECT botfleet_now())
      AND id = (SELECT holder_ticket FROM fleet_lock)
      AND NOT EXISTS (SELECT 1 FROM tickets o
                      WHERE o.closed_at IS NULL AND o.lease_owner IS NOT NULL
                        AND o.lease_expires_at > {LIVE_NOW}
                        AND o.id <> (SELECT holder_ticket FROM fleet_lock))""")
# Tickets of a type in a state the configuration running now does not have (the seed: "the code
# running and the database doesn't match, e.g. because of the update"): the type's initial-state bot
# takes them, to raise their error ticket.
CLAIM_UNKNOWN_STATES = _claim("state <> ALL(%(states)s)")
# Tickets of the state past their lifetime, not yet timed out, that no live process holds (a ticket in
# a handler right now times out once its step is written; _claim leaves leased ones out): their state's
# bot runs ticket_timeout. Through ix_tickets_timer: a deadline passed means the sooner of the two timers passed.
CLAIM_TIMED_OUT = _claim("state = %(state)s", due=f"""{_TIMER} <= (SELECT botfleet_now()) AND timed_out_at IS NULL
      AND deadline_at <= (SELECT botfleet_now())""", order=_TIMER)

# When the state's next wait ends or its next acceptance round or reminder is due, in seconds.
NEXT_DUE = f"""
SELECT extract(epoch FROM least(
    (SELECT min(due_at) FROM tickets
     WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
       AND closed_at IS NULL AND due_at > (SELECT botfleet_now()) AND due_at < 'infinity'),
    (SELECT min({_TIMER}) FROM tickets
     WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
       AND closed_at IS NULL AND timed_out_at IS NULL AND {_TIMER} > (SELECT botfleet_now()))
) - (SELECT botfleet_now()))::float8 AS due_in_s
"""

# add_ticket_to_proceeded_list, for a batch, in one statement: each ticket's row change, its event
# rows and the NOTIFY to the next state's bot commit together. An outcome is applied only if the
# ticket is still at the step it was claimed at and still leased by this process (a NULL owner: a
# person's manual move of an unleased ticket); a retried step finds the step moved on and changes
# nothing. The bot session commits asynchronously; `durable` makes this statement's commit wait for
# the disk, since an outcome must never be lost.
APPLY_OUTCOMES = compact(f"""
WITH durable AS (
    SELECT set_config('synchronous_commit', 'on', true)
), clock AS (
    SELECT botfleet_now() AS at
), o AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(steps)s::int[], %(from_states)s::int[], %(to_states)s::int[],
                         %(closes)s::bool[], %(due_in_s)s::float8[], %(due_at)s::timestamptz[],
                         %(waiting_for)s::bigint[],
                         %(payloads)s::jsonb[], %(set_assignee)s::bool[], %(assignees)s::text[],
                         %(assign_kinds)s::text[],
                         %(attempts)s::int[], %(kinds)s::text[], %(details)s::jsonb[], %(times_out)s::bool[])
        AS o(id, step, from_state, to_state, closes, due_in_s, due_at, waiting_for, payload, set_assignee,
             assignee, assign_kind, attempts, kind, detail, times_out)
), u AS (
    UPDATE tickets t SET
        state = o.to_state,
        state_entered_at = CASE WHEN o.to_state <> o.from_state THEN clock.at ELSE t.state_entered_at END,
        step = t.step + 1,
        payload = coalesce(o.payload, t.payload),
        assigned_user = CASE WHEN o.set_assignee THEN o.assignee ELSE t.assigned_user END,
        attempts = o.attempts,
        waiting_for = o.waiting_for,
        due_at = CASE WHEN o.waiting_for IS NOT NULL THEN 'infinity'::timestamptz
                      WHEN o.due_at IS NOT NULL THEN o.due_at  -- wait_until_time: a time of the one clock
                      ELSE clock.at + o.due_in_s * interval '1 second' END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        closed_at = CASE WHEN o.closes THEN clock.at END,
        timed_out_at = CASE WHEN o.times_out THEN clock.at ELSE t.timed_out_at END,
        -- A new state is a new stay: it may be reported stuck again.
        stuck_reported_at = CASE WHEN o.to_state <> o.from_state THEN NULL ELSE t.stuck_reported_at END
    FROM o, clock
    -- No closed_at test: a closed ticket's step has moved on, and the test would tempt the planner
    -- into the index of all open tickets instead of the primary key.
    WHERE t.id = o.id AND t.step = o.step AND t.state = o.from_state
      AND t.lease_owner IS NOT DISTINCT FROM %(owner)s
    RETURNING t.id, t.step, t.metaservice, t.ticket_type, t.state, t.has_waiters, o.from_state, o.to_state, o.kind,
              o.detail, o.closes, o.set_assignee, o.assign_kind, t.assigned_user, o.waiting_for,
              CASE WHEN isfinite(t.due_at) THEN extract(epoch FROM t.due_at - clock.at)::float8 END AS due_in_s,
              -- The sooner of its lifetime's end and its next round, which its state's bot times.
              CASE WHEN t.closed_at IS NULL AND t.timed_out_at IS NULL
                   THEN extract(epoch FROM {_TIMER} - clock.at)::float8 END AS timer_in_s
), ev AS (
    INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail, at)
    -- A manual assignment or acceptance is its own event, written with the user below.
    SELECT id, step, kind, from_state, to_state, %(actor)s, detail, clock.at FROM u, clock
    WHERE kind NOT IN ('assigned', 'accepted')
    UNION ALL
    SELECT id, step, assign_kind, to_state, to_state, %(actor)s, jsonb_build_object('user', assigned_user), clock.at
    FROM u, clock WHERE set_assignee
    UNION ALL
    -- A ticket closed by a transition gets its 'closed' event here; one closed by hand is that event.
    SELECT id, step, 'closed', to_state, to_state, %(actor)s, NULL, clock.at FROM u, clock WHERE closes AND kind <> 'closed'
), awaited AS (
    -- Tell each awaited ticket it has a waiter. The row lock orders this against a concurrent close:
    -- either the close sees has_waiters and wakes us, or this sees closed_at and we wake ourselves.
    -- A ticket updated by this very statement cannot be updated twice: MARK_AWAITED does those after it.
    UPDATE tickets SET has_waiters = true
    WHERE id IN (SELECT waiting_for FROM u WHERE waiting_for IS NOT NULL) AND id NOT IN (SELECT id FROM u)
    RETURNING id, closed_at IS NOT NULL AS closed
), wake AS (
    -- Wake the bot of every state a ticket entered, final states included: theirs keep closed tickets;
    -- and the bot of a ticket someone assigned, accepted or patched by hand, which is due again at once.
    SELECT pg_notify(c, '') FROM (
        SELECT DISTINCT {CHANNEL_SQL.format(t='u')} AS c FROM u
        WHERE kind IN ('transitioned', 'timeout', 'assigned', 'accepted', 'patched')
    ) ch
)
SELECT id, metaservice, ticket_type, to_state, closes, has_waiters, waiting_for, kind, due_in_s, timer_in_s,
       (SELECT coalesce(array_agg(id), '{{}}') FROM awaited WHERE closed) AS closed_awaited
FROM u, (SELECT count(*) FROM wake) w, durable
""")

# Awaited tickets whose own outcome was written in the same batch as their waiter's: told that they
# have a waiter, under the row lock, as the `awaited` step of APPLY_OUTCOMES does for the others.
MARK_AWAITED = """
UPDATE tickets SET has_waiters = true WHERE id = ANY(%(ids)s)
RETURNING id, closed_at IS NOT NULL AS closed
"""

# Tickets waiting for one of `ids` that is now closed become due, and learn how it ended.
WAKE_WAITERS = f"""
WITH closed AS (
    SELECT id, state FROM tickets WHERE id = ANY(%(ids)s) AND closed_at IS NOT NULL
), woken AS (
    -- The woken ticket's handler finds what it waited for, and how that ended, in payload.woken_by.
    UPDATE tickets w SET due_at = (SELECT botfleet_now()), waiting_for = NULL, attempts = 0, step = w.step + 1,
        payload = w.payload || jsonb_build_object('woken_by', jsonb_build_object('id', closed.id, 'state', closed.state))
    FROM closed
    WHERE w.waiting_for = closed.id
    RETURNING w.id, w.step, w.state, w.metaservice, w.ticket_type, closed.id AS closed_id
), ev AS (
    INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail)
    SELECT id, step, 'woke', state, state, %(actor)s, jsonb_build_object('closed_ticket', closed_id)
    FROM woken
)
SELECT pg_notify(c, '') FROM (SELECT DISTINCT {CHANNEL_SQL.format(t='woken')} AS c FROM woken) ch
"""

# The sweep's safety net for waits: closed tickets that tickets of this state still wait for (a
# process that closed one died before waking its waiters).
STRANDED_WAITS = """
SELECT DISTINCT t.id FROM tickets w JOIN tickets t ON t.id = w.waiting_for
WHERE w.metaservice = %(metaservice)s AND w.ticket_type = %(ticket_type)s AND w.state = %(state)s
  AND w.closed_at IS NULL AND w.due_at = 'infinity' AND t.closed_at IS NOT NULL
"""

# A ticket has at most one open error ticket (uq_tickets_open_error, whose predicate this repeats): a later
# reason is added to the open one's `reasons` (one of an older botfleet has only its `reason`). The row lock
# orders this against the error ticket's close: a close after it wakes the ticket that now waits for it.
FOLD_ERROR_REASON = f"""
UPDATE tickets SET payload = payload || jsonb_build_object('reasons',
    coalesce(payload->'reasons', jsonb_build_array(payload->'reason')) || to_jsonb(%(reason)s::text))
WHERE parent_id = %(parent_id)s AND metaservice = '{ERROR_METASERVICE}' AND ticket_type = '{ERROR_TYPE}'
  AND closed_at IS NULL
RETURNING id
"""

# The heartbeat also renews the leases of the tickets this process holds, so a slow handler keeps
# its ticket while the process lives, and a dead process's tickets free up after one lease. Only the
# tickets the process knows it holds: a claim whose answer was lost with a broken connection leased
# tickets nobody works on, and those must expire.
HEARTBEAT = f"""
WITH renewable AS (
    -- A ticket whose row someone else has locked is renewed at a later heartbeat: waiting for the
    -- lock would stop this heartbeat, and the watchdog would take the bot for hung.
    SELECT id FROM tickets WHERE lease_owner = %(owner)s AND id = ANY(%(held)s)
    FOR UPDATE SKIP LOCKED
), renewed AS (
    UPDATE tickets t
    SET lease_expires_at = {LIVE_NOW} + %(lease_s)s * interval '1 second',
        due_at = (SELECT botfleet_now()) + %(lease_s)s * interval '1 second'
    FROM renewable r WHERE t.id = r.id
    RETURNING 1
)
UPDATE bot_processes
SET heartbeat_at = {LIVE_NOW}, processed = %(processed)s, failed = %(failed)s, loop_turns = %(loop_turns)s,
    stopped_at = NULL  -- a process retired as dead while the database was away is alive after all
WHERE instance_id = %(owner)s
RETURNING (SELECT count(*) FROM renewed) AS renewed,
          -- Whether another process of this bot has gone silent: rare, and then retired and freed.
          EXISTS (SELECT 1 FROM bot_processes
                  WHERE bot_name = %(bot)s AND instance_id <> %(owner)s AND stopped_at IS NULL
                    AND heartbeat_at < {LIVE_NOW} - %(dead_after_s)s * interval '1 second') AS silent_peers
"""

# Add a batch of a bot process's counts to the bot's totals, once: the batch's sequence number is
# recorded on the process, so the same batch sent again (its reply was lost) adds nothing.
_ADD_BUCKETS = """(SELECT coalesce(jsonb_object_agg(k, coalesce((bot_stats.{0}->>k)::bigint, 0)
                                            + coalesce((excluded.{0}->>k)::bigint, 0)), '{{}}')
                   FROM (SELECT jsonb_object_keys(bot_stats.{0})
                         UNION SELECT jsonb_object_keys(excluded.{0})) AS keys(k))"""
ADD_BOT_STATS = f"""
WITH accepted AS (
    UPDATE bot_processes SET stats_seq = %(seq)s WHERE instance_id = %(owner)s AND stats_seq < %(seq)s
    RETURNING 1
)
INSERT INTO bot_stats (bot_name, transitions, handler_failures, error_tickets, timeouts, reminders,
                       notifications_rejected, hop_buckets, hop_sum_s, handler_buckets, handler_sum_s)
SELECT %(bot)s, %(transitions)s, %(handler_failures)s, %(error_tickets)s, %(timeouts)s, %(reminders)s,
       %(notifications_rejected)s, %(hop_buckets)s, %(hop_sum_s)s, %(handler_buckets)s, %(handler_sum_s)s
WHERE EXISTS (SELECT 1 FROM accepted)
ON CONFLICT (bot_name) DO UPDATE SET
    transitions = bot_stats.transitions + excluded.transitions,
    handler_failures = bot_stats.handler_failures + excluded.handler_failures,
    error_tickets = bot_stats.error_tickets + excluded.error_tickets,
    timeouts = bot_stats.timeouts + excluded.timeouts,
    reminders = bot_stats.reminders + excluded.reminders,
    notifications_rejected = bot_stats.notifications_rejected + excluded.notifications_rejected,
    hop_buckets = {_ADD_BUCKETS.format('hop_buckets')},
    hop_sum_s = bot_stats.hop_sum_s + excluded.hop_sum_s,
    handler_buckets = {_ADD_BUCKETS.format('handler_buckets')},
    handler_sum_s = bot_stats.handler_sum_s + excluded.handler_sum_s
"""

# -- Console: bot stats history ------------------------------------------------------------------------

# A snapshot of every configured bot's totals, keyed by the minute of business time, and what is older than an
# hour dropped (the console draws the last 30 minutes). Every watchdog runs it with its housekeeping: the first
# in a minute writes the row, the others find it there and write nothing, so the series needs no lease, and a
# lease changing hands mid-minute cannot write a minute twice. A bot removed from the config keeps its bot_stats
# row, but is not snapshotted: its line would be flat for ever.
SNAPSHOT_BOT_STATS = """
WITH pruned AS (
    DELETE FROM bot_stats_history WHERE at < (SELECT botfleet_now()) - interval '60 minutes'
)
INSERT INTO bot_stats_history (bot_name, at, transitions, hop_buckets)
SELECT s.bot_name, date_trunc('minute', (SELECT botfleet_now())), s.transitions, s.hop_buckets
FROM bot_stats s JOIN bots b ON b.name = s.bot_name
ON CONFLICT (bot_name, at) DO NOTHING
"""

# The snapshots of the last `minutes` minutes and the one before them (the first difference needs it), in order.
BOT_STATS_HISTORY = """
SELECT bot_name, at, transitions, hop_buckets FROM bot_stats_history
WHERE at >= date_trunc('minute', (SELECT botfleet_now())) - %(minutes)s * interval '1 minute'
ORDER BY bot_name, at
"""

# Release tickets still in hand at shutdown so another replica can take them at once.
# The tickets it knows it holds, and any other of its state's that it leased (a claim whose answer was
# lost); found through their ids and their state, not a scan of the whole table.
RELEASE_LEASES = """
UPDATE tickets SET lease_owner = NULL, lease_expires_at = NULL, due_at = (SELECT botfleet_now())
WHERE lease_owner = %(owner)s AND closed_at IS NULL
  AND (id = ANY(%(held)s)
       OR (metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
           AND due_at > (SELECT botfleet_now())))
"""

# A process that registers where another ran before it (the same supervisord process name on the
# same host) knows that one is dead, since supervisord started this one in its place: it is retired
# at once, and its tickets are freed (FREE_LEASES_OF) instead of waiting for their leases to run out.
REGISTER_PROCESS = f"""
WITH registered AS (
    INSERT INTO bot_processes (instance_id, bot_name, host, pid, version, process_name, started_at, heartbeat_at)
    VALUES (%(owner)s, %(bot)s, %(host)s, %(pid)s, %(version)s, %(process_name)s, {LIVE_NOW}, {LIVE_NOW})
), predecessors AS (
    UPDATE bot_processes SET stopped_at = {LIVE_NOW}
    WHERE bot_name = %(bot)s AND host = %(host)s AND process_name = %(process_name)s
      AND instance_id <> %(owner)s AND stopped_at IS NULL
    RETURNING instance_id
)
SELECT coalesce(array_agg(instance_id), '{{}}') AS predecessors FROM predecessors
"""

# Processes of the same bot that stopped heartbeating without deregistering (killed, hung, their host
# gone): retired, so that their tickets can be freed by exactly one live process.
RETIRE_SILENT_PROCESSES = f"""
UPDATE bot_processes SET stopped_at = heartbeat_at
WHERE bot_name = %(bot)s AND instance_id <> %(owner)s AND stopped_at IS NULL
  AND heartbeat_at < {LIVE_NOW} - %(dead_after_s)s * interval '1 second'
RETURNING instance_id
"""

# The open tickets of a bot's state leased to dead processes are due now: claimable at once, and the
# claim records who held them (the 'claimed' event). Their handlers had already started: they go
# first (due since the epoch), not behind a backlog that queued up while they were in hand.
FREE_LEASES_OF = f"""
UPDATE tickets SET due_at = 'epoch', lease_expires_at = {LIVE_NOW}
WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
  AND closed_at IS NULL AND due_at > (SELECT botfleet_now()) AND lease_owner = ANY(%(owners)s)
"""

# `deregistered`: the process ended its registration itself, as a clean stop does; the watchdog counts the restart
# that follows as an operator's, not as a crash.
DEREGISTER_PROCESS = f"""
UPDATE bot_processes SET stopped_at = {LIVE_NOW}, heartbeat_at = {LIVE_NOW}, processed = %(processed)s,
    failed = %(failed)s, deregistered = true
WHERE instance_id = %(owner)s
"""

PRUNE_PROCESSES = f"""
DELETE FROM bot_processes
WHERE bot_name = %(bot)s AND coalesce(stopped_at, heartbeat_at) < {LIVE_NOW} - interval '1 day'
"""

UPSERT_BOT = """
INSERT INTO bots (name, metaservice, ticket_type, state, state_name, replicas, hosts)
VALUES (%(name)s, %(metaservice)s, %(ticket_type)s, %(state)s, %(state_name)s, %(replicas)s, %(hosts)s)
ON CONFLICT (name) DO UPDATE SET metaservice = excluded.metaservice, ticket_type = excluded.ticket_type,
    state = excluded.state, state_name = excluded.state_name, replicas = excluded.replicas,
    hosts = excluded.hosts
"""

DELETE_UNCONFIGURED_BOTS = """
WITH gone AS (DELETE FROM bots WHERE name <> ALL(%(names)s) RETURNING name)
DELETE FROM bot_health WHERE bot_name IN (SELECT name FROM gone)
"""

UPSERT_TICKET_TYPE = """
INSERT INTO ticket_types (metaservice, name, description, initial_state, lifetime_s,
                          notification_frequency_s, retention_s, group_role, exclusive, runs_when_locked,
                          callback_url)
VALUES (%(metaservice)s, %(name)s, %(description)s, %(initial_state)s, %(lifetime_s)s,
        %(notification_frequency_s)s, %(retention_s)s, %(group_role)s, %(exclusive)s, %(runs_when_locked)s,
        %(callback_url)s)
ON CONFLICT (metaservice, name) DO UPDATE SET description = excluded.description,
    initial_state = excluded.initial_state, lifetime_s = excluded.lifetime_s,
    notification_frequency_s = excluded.notification_frequency_s, retention_s = excluded.retention_s,
    group_role = excluded.group_role, exclusive = excluded.exclusive,
    runs_when_locked = excluded.runs_when_locked, callback_url = excluded.callback_url
"""

UPSERT_STATUS_CODE = """
INSERT INTO status_codes (metaservice, ticket_type, code, name, description, final, normal_next, alternates)
VALUES (%(metaservice)s, %(ticket_type)s, %(code)s, %(name)s, %(description)s, %(final)s, %(normal_next)s,
        %(alternates)s)
ON CONFLICT (metaservice, ticket_type, code) DO UPDATE SET name = excluded.name,
    description = excluded.description, final = excluded.final, normal_next = excluded.normal_next,
    alternates = excluded.alternates
"""

# What a reader (the API, the CLI) sees of a ticket: a bot's columns, and when it starts and whom it calls back.
GET_TICKET = f"SELECT {_READ_COLUMNS} FROM tickets WHERE id = %(id)s"

# A manual move locks the ticket and needs to know whether a live bot holds it.
LOCK_TICKET = f"""
SELECT {TICKET_COLUMNS}, lease_expires_at > {LIVE_NOW} AS leased FROM tickets WHERE id = %(id)s FOR UPDATE
"""

DROP_EXPIRED_LEASE = "UPDATE tickets SET lease_owner = NULL WHERE id = %(id)s"

GET_EVENTS = """
SELECT id, ticket_id, step, kind, from_state, to_state, at, actor, detail
FROM ticket_events WHERE ticket_id = %(id)s ORDER BY id
"""

LIST_TICKETS = f"""
SELECT {_READ_COLUMNS} FROM tickets
WHERE (%(metaservice)s::text IS NULL OR metaservice = %(metaservice)s)
  AND (%(ticket_type)s::text IS NULL OR ticket_type = %(ticket_type)s)
  AND (%(state)s::int IS NULL OR state = %(state)s)
  AND (%(open_only)s IS FALSE OR closed_at IS NULL)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

# The hosts that run a bot: those `hosts:` names, or (without `hosts:`) every host a watchdog has run on.
_BOT_HOSTS = """(SELECT coalesce(b.hosts, (SELECT array_agg(DISTINCT host ORDER BY host) FROM watchdogs), '{}'))"""

# Per bot, its health on each host that runs it: `{host: [health, reason]}` (a host that has not judged
# it yet maps to null). A verdict older than `stale_after_s` is "stale": its watchdog stopped judging.
_HEALTH_BY_HOST = f"""(SELECT coalesce(jsonb_object_agg(h.host, CASE
                       WHEN bh.health IS NULL THEN NULL
                       WHEN bh.at < {LIVE_NOW} - %(stale_after_s)s * interval '1 second'
                           THEN jsonb_build_array('stale', 'the watchdog of ' || h.host || ' last judged it '
                                || round(extract(epoch FROM {LIVE_NOW} - bh.at)) || 's ago: ' || bh.health)
                       ELSE jsonb_build_array(bh.health, bh.reason) END), '{{}}')
                   FROM unnest({_BOT_HOSTS}) AS h(host)
                   LEFT JOIN bot_health bh ON bh.bot_name = b.name AND bh.host = h.host)"""

BOT_STATUS = f"""
SELECT b.name, b.metaservice, b.ticket_type, b.state, b.state_name, b.enabled, b.replicas,
       {_HEALTH_BY_HOST} AS health_by_host,
       max(p.heartbeat_at) FILTER (WHERE p.stopped_at IS NULL) AS last_heartbeat_at,
       count(p.*) FILTER (WHERE p.stopped_at IS NULL) AS registered_processes,
       coalesce(sum(p.processed), 0)::bigint AS processed,
       coalesce(sum(p.failed), 0)::bigint AS failed
FROM bots b LEFT JOIN bot_processes p ON p.bot_name = b.name
GROUP BY b.name ORDER BY b.name
"""

# The bots the database knows (synced from the last good config): what monitoring lists while the config
# folder is broken.
KNOWN_BOTS = "SELECT name, metaservice, ticket_type, state, state_name FROM bots ORDER BY name"

TICKET_COUNTS = """
SELECT metaservice, ticket_type, state, count(*) FILTER (WHERE closed_at IS NULL) AS open,
       count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed
FROM tickets GROUP BY metaservice, ticket_type, state ORDER BY 1, 2, 3
"""

# -- the watchdog --------------------------------------------------------------------------------

# Ages are computed by the database's clock, so the watchdog's host clock does not matter; and on real
# time (LIVE_NOW), so a shift of business time does not age a heartbeat.
# The bots this host runs, with this host's last verdict on each, and each live process's heartbeat and steps
# written. For the bots that run handlers (`handler_bots`), their work that waits: `claimable`, due tickets of the
# state nobody holds (counted up to 1000, and only while the fleet is open: a locked fleet claims nothing), and
# `in_hand`, those this host's processes of the bot hold. Held tickets are due within a lease (`lease_max_s`, the
# longest of the host's bots), the index's range that leaves out tickets waiting on a timer.
WATCHDOG_BOTS = f"""
WITH here AS (
    SELECT b.name, b.metaservice, b.ticket_type, b.state, b.enabled, b.replicas, bh.health,
           coalesce(array_agg(p.pid) FILTER (WHERE p.instance_id IS NOT NULL), '{{}}') AS pids,
           coalesce(array_agg(extract(epoch FROM {LIVE_NOW} - p.heartbeat_at)::float8)
                    FILTER (WHERE p.instance_id IS NOT NULL), '{{}}') AS ages_s,
           coalesce(array_agg(p.processed) FILTER (WHERE p.instance_id IS NOT NULL), '{{}}') AS processed,
           coalesce(array_agg(p.instance_id) FILTER (WHERE p.instance_id IS NOT NULL), '{{}}') AS owners
    FROM bots b
    LEFT JOIN bot_health bh ON bh.bot_name = b.name AND bh.host = %(host)s
    LEFT JOIN bot_processes p ON p.bot_name = b.name AND p.stopped_at IS NULL AND p.host = %(host)s
    WHERE b.hosts IS NULL OR %(host)s = ANY(b.hosts)
    GROUP BY b.name, bh.health
)
SELECT here.*,
       CASE WHEN here.name = ANY(%(handler_bots)s) THEN (
           SELECT count(*) FROM (
               SELECT 1 FROM tickets t
               WHERE t.metaservice = here.metaservice AND t.ticket_type = here.ticket_type AND t.state = here.state
                 AND t.closed_at IS NULL AND t.due_at <= (SELECT botfleet_now())
                 AND coalesce(t.lease_expires_at <= {LIVE_NOW}, true) AND (SELECT state FROM fleet_lock) = 'open'
               LIMIT 1000) AS due) END AS claimable,
       CASE WHEN here.name = ANY(%(handler_bots)s) THEN (
           SELECT count(*) FROM tickets t
           WHERE t.metaservice = here.metaservice AND t.ticket_type = here.ticket_type AND t.state = here.state
             AND t.closed_at IS NULL AND t.due_at > (SELECT botfleet_now())
             AND t.due_at <= (SELECT botfleet_now()) + %(lease_max_s)s * interval '1 second'
             AND t.lease_owner = ANY(here.owners) AND t.lease_expires_at > {LIVE_NOW}) END AS in_hand
FROM here ORDER BY here.name
"""

# This host's verdicts of one check, in one statement: each bot's row is rewritten (its `at` is how fresh
# the verdict is), 25 bots a check costing one round trip, not 25. A row another session holds locked (a
# person in psql) is skipped, not waited for: that verdict waits for a later check, the others are written.
# With each verdict, the restart backoff: restarts in a row, and for how many more seconds (NULL: none).
SET_BOTS_HEALTH = f"""
WITH v AS (
    SELECT v.name, v.health, v.reason, v.restarts,
           {LIVE_NOW} + v.backoff_s * interval '1 second' AS backoff_until
    FROM unnest(%(names)s::text[], %(healths)s::text[], %(reasons)s::text[], %(restarts)s::int[],
                %(backoffs_s)s::float8[]) AS v(name, health, reason, restarts, backoff_s)
), free AS (
    SELECT bot_name FROM bot_health WHERE host = %(host)s AND bot_name = ANY(%(names)s) FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE bot_health b SET health = v.health, reason = v.reason, at = {LIVE_NOW}, restarts_in_a_row = v.restarts,
        restart_backoff_until = v.backoff_until
    FROM v JOIN free ON free.bot_name = v.name
    WHERE b.host = %(host)s AND b.bot_name = v.name
)
INSERT INTO bot_health (bot_name, host, health, reason, at, restarts_in_a_row, restart_backoff_until)
SELECT v.name, %(host)s, v.health, v.reason, {LIVE_NOW}, v.restarts, v.backoff_until FROM v
WHERE NOT EXISTS (SELECT 1 FROM bot_health b WHERE b.host = %(host)s AND b.bot_name = v.name)
ON CONFLICT (bot_name, host) DO NOTHING
"""

# Restarts the watchdogs hold back: per bot and host, restarts in a row and the seconds until the next may come
# (0 once it may), for `botfleet status` and the metrics. Verdicts of stopped watchdogs too: the backoff is
# theirs until a watchdog checks that host again.
RESTART_BACKOFFS = f"""
SELECT bot_name AS bot, host, restarts_in_a_row,
       greatest(0, coalesce(extract(epoch FROM restart_backoff_until - {LIVE_NOW}), 0))::float8 AS backoff_s
FROM bot_health WHERE restarts_in_a_row > 0 ORDER BY bot_name, host
"""

# The registration of the process a bot's supervisord process ran before (its last pid): whether it ended it
# itself (a clean stop: an operator's restart) or not (it died: a crash). No row: it died before registering.
PREVIOUS_REGISTRATION = """
SELECT deregistered FROM bot_processes WHERE bot_name = %(bot)s AND host = %(host)s AND pid = %(pid)s
ORDER BY started_at DESC LIMIT 1
"""

# Verdicts of this host on bots it no longer runs (moved to another host in `hosts:`).
FORGET_OTHER_HEALTH = "DELETE FROM bot_health WHERE host = %(host)s AND bot_name <> ALL(%(names)s)"

# `botfleet watchdog forget HOST`: a host taken out of the fleet for good is no longer expected to check.
FORGET_HOST = f"""
WITH watchdogs_gone AS (DELETE FROM watchdogs WHERE host = %(host)s RETURNING 1),
     health_gone AS (DELETE FROM bot_health WHERE host = %(host)s RETURNING 1),
     retired AS (UPDATE bot_processes SET stopped_at = {LIVE_NOW} WHERE host = %(host)s AND stopped_at IS NULL RETURNING 1)
SELECT (SELECT count(*) FROM watchdogs_gone) AS watchdogs, (SELECT count(*) FROM retired) AS processes
"""

WATCHDOG_AGE_OF_HOST = f"""
SELECT extract(epoch FROM {LIVE_NOW} - max(heartbeat_at))::float8 AS age_s FROM watchdogs WHERE host = %(host)s
"""

SET_BOT_ENABLED = "UPDATE bots SET enabled = %(enabled)s WHERE name = %(name)s RETURNING name"
# Rendering supervisord's files: these bots' programs are not started by supervisord.
DISABLED_BOTS = "SELECT name FROM bots WHERE NOT enabled ORDER BY name"
# A bot at its start: a bot not in the table yet (before its first sync) is enabled.
BOT_ENABLED = "SELECT coalesce((SELECT enabled FROM bots WHERE name = %(name)s), true) AS enabled"

RECORD_WATCHDOG_EVENT = """
WITH event AS (
    INSERT INTO watchdog_events (watchdog, bot, action, reason)
    VALUES (%(watchdog)s, %(bot)s, %(action)s, %(reason)s)
)
INSERT INTO watchdog_restart_totals (bot, reason, restarts)
SELECT coalesce(%(bot)s, ''), split_part(%(reason)s, ':', 1), 1 WHERE %(action)s = 'restart'
ON CONFLICT (bot, reason) DO UPDATE SET restarts = watchdog_restart_totals.restarts + 1
"""

# Written as a check starts (liveness of the loop); last_check_at as it completes (success).
WATCHDOG_HEARTBEAT = f"""
INSERT INTO watchdogs (name, host, pid, started_at, heartbeat_at)
VALUES (%(name)s, %(host)s, %(pid)s, {LIVE_NOW}, {LIVE_NOW})
ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, heartbeat_at = {LIVE_NOW}
"""

WATCHDOG_CHECKED = f"""
UPDATE watchdogs SET last_check_at = {LIVE_NOW}, supervisor_error = %(supervisor_error)s WHERE name = %(name)s
"""

# One watchdog at a time holds the fleet-wide lease; it is renewed every check and taken over
# only after it expires.
TAKE_FLEET_LEASE = f"""
INSERT INTO fleet_leases (name, holder, expires_at)
VALUES ('watchdog', %(holder)s, {LIVE_NOW} + %(lease_s)s * interval '1 second')
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE fleet_leases.holder = excluded.holder OR fleet_leases.expires_at < {LIVE_NOW}
RETURNING holder
"""

# Fleet-wide duty: processes that stopped heartbeating long ago (killed, host gone) are marked
# stopped, so status and metrics count only the living.
RETIRE_DEAD_PROCESSES = f"""
UPDATE bot_processes SET stopped_at = heartbeat_at
WHERE stopped_at IS NULL AND heartbeat_at < {LIVE_NOW} - %(dead_after_s)s * interval '1 second'
"""

# Registrations of a host's processes whose pid its supervisord no longer runs: dead now. Retired; their
# tickets are freed next (FREE_TICKETS_OF_RETIRED).
RETIRE_PROCESSES_BY_PID = f"""
UPDATE bot_processes SET stopped_at = {LIVE_NOW}
WHERE bot_name = %(bot)s AND host = %(host)s AND stopped_at IS NULL AND pid = ANY(%(pids)s)
RETURNING instance_id
"""

# The open tickets of a bot's state that retired processes (`owners`) held, not yet due.
_HELD_BY_RETIRED = """tickets t
    JOIN bots b ON t.metaservice = b.metaservice AND t.ticket_type = b.ticket_type AND t.state = b.state
    WHERE b.name = %(bot)s AND t.closed_at IS NULL AND t.due_at > (SELECT botfleet_now())
      AND t.lease_owner = ANY(%(owners)s)"""

# Those tickets due at once and first, as FREE_LEASES_OF does for a bot's own peers. One whose row another
# session has locked (a person in psql) is skipped and counted in `locked`, for a later try: the watchdog
# waiting for that lock would stop checking every other bot.
FREE_TICKETS_OF_RETIRED = f"""
WITH freeable AS (
    SELECT t.id FROM {_HELD_BY_RETIRED}
    FOR UPDATE OF t SKIP LOCKED
), freed AS (
    UPDATE tickets t SET due_at = 'epoch', lease_expires_at = {LIVE_NOW}
    FROM freeable f WHERE t.id = f.id
    RETURNING t.id
)
SELECT (SELECT count(*) FROM freed) AS freed,
       (SELECT count(*) FROM {_HELD_BY_RETIRED}) - (SELECT count(*) FROM freed) AS locked
"""

# Events are history, pruned after a month; botfleet_watchdog_restarts_total reads the running totals
# (watchdog_restart_totals), which never go down.
PRUNE_WATCHDOG_EVENTS = "DELETE FROM watchdog_events WHERE at < (SELECT botfleet_now()) - interval '30 days'"

RECENT_WATCHDOG_EVENTS = """
SELECT at, watchdog, bot, action, reason FROM watchdog_events ORDER BY id DESC LIMIT %(limit)s
"""

# What `botfleet check` and /healthz judge by: one row per bot and host that runs it, with the age of
# that host's newest watchdog heartbeat (NULL: none ever) and of its verdict on the bot, and why that watchdog
# found its supervisord not answering, if it did.
HEALTH_CHECK = f"""
SELECT h.host, b.name, b.enabled, bh.health, bh.reason AS health_reason,
       extract(epoch FROM {LIVE_NOW} - bh.at)::float8 AS health_age_s,
       (SELECT extract(epoch FROM {LIVE_NOW} - max(w.heartbeat_at))::float8 FROM watchdogs w
        WHERE w.host = h.host) AS watchdog_age_s,
       (SELECT w.supervisor_error FROM watchdogs w WHERE w.host = h.host
        ORDER BY w.heartbeat_at DESC LIMIT 1) AS supervisor_error
FROM bots b
CROSS JOIN LATERAL unnest({_BOT_HOSTS}) AS h(host)
LEFT JOIN bot_health bh ON bh.bot_name = b.name AND bh.host = h.host
ORDER BY h.host, b.name
"""

# -- metrics (computed at scrape time; every query stays on indexes or small tables) ------------

METRIC_BOTS = f"""
SELECT b.name, b.metaservice, b.ticket_type, b.state, b.enabled, {_HEALTH_BY_HOST} AS health_by_host,
       extract(epoch FROM max(p.heartbeat_at) FILTER (WHERE p.stopped_at IS NULL))::float8 AS last_heartbeat,
       count(p.*) FILTER (WHERE p.stopped_at IS NULL) AS processes,
       s.transitions, s.handler_failures, s.error_tickets, s.timeouts, s.reminders, s.notifications_rejected,
       s.hop_buckets, s.hop_sum_s, s.handler_buckets, s.handler_sum_s
FROM bots b
LEFT JOIN bot_processes p ON p.bot_name = b.name
LEFT JOIN bot_stats s ON s.bot_name = b.name
GROUP BY b.name, s.bot_name ORDER BY b.name
"""

# Only open tickets (the partial claim index), so a million closed ones cost nothing. Due: its bot should
# have it now and nobody holds it (a held ticket's due_at is its lease's end), so an old one is work left
# waiting, where an old open ticket may only wait for a person or a timer. A ticket freed from a dead
# process is due from 'epoch': it counts as due since it entered its state.
METRIC_OPEN_TICKETS = """
SELECT metaservice, ticket_type, state, count(*) AS open,
       extract(epoch FROM min(state_entered_at))::float8 AS oldest,
       count(*) FILTER (WHERE due_at <= (SELECT botfleet_now())) AS due,
       extract(epoch FROM min(greatest(due_at, state_entered_at))
                          FILTER (WHERE due_at <= (SELECT botfleet_now())))::float8 AS oldest_due
FROM tickets WHERE closed_at IS NULL
GROUP BY metaservice, ticket_type, state
"""

# Every bot's count for every reason, 0 where none was recorded: a counter that appears only with its first
# restart would hide that restart from increase() and rate().
METRIC_RESTARTS = """
SELECT bot, reason, restarts FROM watchdog_restart_totals
UNION ALL
SELECT b.name, r.reason, 0 FROM bots b CROSS JOIN unnest(%(reasons)s::text[]) AS r(reason)
WHERE NOT EXISTS (SELECT 1 FROM watchdog_restart_totals t WHERE t.bot = b.name AND t.reason = r.reason)
ORDER BY 1, 2
"""

# Each host's newest completed check, for every host the fleet expects a watchdog on (NULL: none yet), and
# whether its newest watchdog found its supervisord answering (NULL: no watchdog yet).
METRIC_WATCHDOG_HOSTS = f"""
SELECT h.host, (SELECT extract(epoch FROM max(w.last_check_at))::float8 FROM watchdogs w
                WHERE w.host = h.host) AS last_check,
       (SELECT w.supervisor_error IS NULL FROM watchdogs w WHERE w.host = h.host
        ORDER BY w.heartbeat_at DESC LIMIT 1) AS supervisor_up
FROM (SELECT DISTINCT unnest({_BOT_HOSTS}) AS host FROM bots b) AS h ORDER BY h.host
"""

# Rows of watchdogs long replaced by a newer one on the same host (one per restart otherwise).
PRUNE_WATCHDOGS = f"""
DELETE FROM watchdogs w
WHERE w.heartbeat_at < {LIVE_NOW} - interval '1 day'
  AND EXISTS (SELECT 1 FROM watchdogs n WHERE n.host = w.host AND n.heartbeat_at > w.heartbeat_at)
"""

# -- people ----------------------------------------------------------------------------------------

UPSERT_USER = """
INSERT INTO users (name, email, window_start, window_end, tz)
VALUES (%(name)s, %(email)s, %(window_start)s, %(window_end)s, %(tz)s)
ON CONFLICT (name) DO UPDATE SET email = excluded.email, window_start = excluded.window_start,
    window_end = excluded.window_end, tz = excluded.tz
"""

ADD_USER_IF_MISSING = """
INSERT INTO users (name, email, window_start, window_end, tz)
VALUES (%(name)s, %(email)s, %(window_start)s, %(window_end)s, %(tz)s)
ON CONFLICT (name) DO NOTHING
"""

KNOWN_TIME_ZONE = "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = %(tz)s) AS known"

DELETE_USER = "DELETE FROM users WHERE name = %(name)s RETURNING name"

LIST_USERS = """
SELECT u.name, u.email, u.window_start, u.window_end, u.tz,
       coalesce(array_agg(m.group_name ORDER BY m.group_name) FILTER (WHERE m.group_name IS NOT NULL), '{}') AS groups
FROM users u LEFT JOIN group_members m ON m.user_name = u.name
GROUP BY u.name ORDER BY u.name
"""

ADD_GROUP = "INSERT INTO groups (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING RETURNING name"

DELETE_GROUP = "DELETE FROM groups WHERE name = %(name)s RETURNING name"

GROUP_EXISTS = "SELECT EXISTS (SELECT 1 FROM groups WHERE name = %(name)s) AS found"

# The names of `users` that are not users at all.
UNKNOWN_USERS = "SELECT name FROM unnest(%(users)s::text[]) AS u(name) WHERE name NOT IN (SELECT name FROM users)"

ADD_MEMBERS = """
INSERT INTO group_members (group_name, user_name) SELECT %(group)s, unnest(%(users)s::text[])
ON CONFLICT DO NOTHING
"""

REMOVE_MEMBERS = "DELETE FROM group_members WHERE group_name = %(group)s AND user_name = ANY(%(users)s)"

LIST_GROUPS = """
SELECT g.name, coalesce(array_agg(m.user_name ORDER BY m.user_name) FILTER (WHERE m.user_name IS NOT NULL), '{}')
       AS members
FROM groups g LEFT JOIN group_members m ON m.group_name = g.name
GROUP BY g.name ORDER BY g.name
"""

# Of (ticket id, user) pairs, those where the user may not hold the ticket: not a user, or not a member
# of the ticket's group (a ticket without a group may go to any user).
REFUSED_ASSIGNEES = """
SELECT a.ticket_id, a.user_name, t.group_role, u.name IS NOT NULL AS is_user
FROM unnest(%(ticket_ids)s::bigint[], %(users)s::text[]) AS a(ticket_id, user_name)
JOIN tickets t ON t.id = a.ticket_id
LEFT JOIN users u ON u.name = a.user_name
WHERE u.name IS NULL
   OR (t.group_role IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM group_members m WHERE m.group_name = t.group_role AND m.user_name = a.user_name))
"""

# -- notifications and timer rounds -----------------------------------------------------------------

# The acceptance rounds and reminders due in one state, each exactly once, whatever the replicas: the
# due tickets are locked (SKIP LOCKED), their next round moved on by whole periods (rounds missed while
# no bot ran are not sent in a burst), and the notifications and the 'reminder' event written, all in
# this one statement. No round at or after the deadline: the lifetime's timeout is the last word. The
# round does not touch `step`, so a handler running meanwhile is unaffected.
REMIND = compact(f"""
WITH due AS (
    SELECT id FROM tickets
    WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
      AND closed_at IS NULL AND timed_out_at IS NULL AND {_TIMER} <= (SELECT botfleet_now())
      AND next_reminder_at <= (SELECT botfleet_now()) AND next_reminder_at < deadline_at
      -- A round due before the deadline but not sent by then (the fleet was down over it, the clock shifted
      -- past both) is not sent late: the lifetime's timeout is the last word.
      AND deadline_at > (SELECT botfleet_now())
    ORDER BY {_TIMER}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), setting AS (
    SELECT {_type_setting("notification_frequency")} AS frequency_s
), rounds AS (
    UPDATE tickets t
    SET next_reminder_at = t.next_reminder_at + (floor(extract(epoch FROM (SELECT botfleet_now()) - t.next_reminder_at)
                                                       / setting.frequency_s) + 1) * setting.frequency_s * interval '1 second'
    FROM due, setting WHERE t.id = due.id
    RETURNING t.id, t.step, t.state, t.metaservice, t.ticket_type, t.group_role, t.assigned_user, t.payload
), {_send_rounds("rounds")}
SELECT (SELECT count(*) FROM rounds) AS due, round_events AS rounds,
       (SELECT count(*) FROM sent) AS notifications
FROM round_results
""")

# send_user_notification outside a handler's outcome (the CLI, the API, timers of their own).
NOTIFY_USER = f"""
WITH sent AS (
    INSERT INTO notifications (user_name, ticket_id, kind, text, email_state, email_due_at)
    SELECT u.name, %(ticket_id)s, %(kind)s, %(text)s, {_NOTIFICATION_EMAIL}
    FROM users u WHERE u.name = %(user)s
    RETURNING id, email_state
)
SELECT id, (SELECT count(pg_notify('{MAIL_CHANNEL}', '')) FROM sent WHERE email_state = 'pending') AS woke
FROM sent
"""

INBOX = """
SELECT id, kind, ticket_id, text, created_at AS at, read_at IS NOT NULL AS read, email_state, email_attempts,
       email_error, email_note
FROM notifications WHERE user_name = %(user)s AND (%(all)s OR read_at IS NULL)
ORDER BY id DESC LIMIT %(limit)s
"""

MARK_READ = """
UPDATE notifications SET read_at = (SELECT botfleet_now())
WHERE user_name = %(user)s AND read_at IS NULL AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
RETURNING id
"""

# -- ticket type settings (`botfleet type`) ----------------------------------------------------------

SET_TYPE_OVERRIDES = """
UPDATE ticket_types SET lifetime_override_s = %(lifetime_s)s, notification_frequency_override_s = %(frequency_s)s
WHERE metaservice = %(metaservice)s AND name = %(ticket_type)s
RETURNING coalesce(lifetime_override_s, lifetime_s) AS lifetime_s
"""

# Open tickets of a type keep counting their lifetime from creation, under the lifetime in force now.
REDATE_DEADLINES = """
UPDATE tickets SET deadline_at = created_at + %(lifetime_s)s * interval '1 second'
WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND closed_at IS NULL AND timed_out_at IS NULL
"""

# A type's lifetime or notification frequency changed: the bots of its states set their timers again.
WAKE_TYPE_TIMERS = f"""
SELECT count(pg_notify({CHANNEL_SQL.format(t='s')}, '{TIMERS}'))
FROM (SELECT DISTINCT metaservice, ticket_type, code AS state FROM status_codes
      WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s) s
"""

TYPE_SETTINGS = """
SELECT metaservice, name, lifetime_s, lifetime_override_s, notification_frequency_s, notification_frequency_override_s,
       coalesce(lifetime_override_s, lifetime_s) AS effective_lifetime_s,
       coalesce(notification_frequency_override_s, notification_frequency_s) AS effective_notification_frequency_s
FROM ticket_types WHERE %(metaservice)s::text IS NULL OR (metaservice = %(metaservice)s AND name = %(ticket_type)s)
ORDER BY metaservice, name
"""

# -- the console: work and people ---------------------------------------------------------------------

# The newest open jobs of the job types (arrays in pairs), by id: read from the open part of the claim
# index, so closed jobs, however many, are never looked at.
CONSOLE_OPEN_JOB_IDS = """
WITH open_jobs AS MATERIALIZED (
    SELECT t.id FROM tickets t
    JOIN unnest(%(metaservices)s::text[], %(ticket_types)s::text[]) AS k(metaservice, ticket_type)
      ON t.metaservice = k.metaservice AND t.ticket_type = k.ticket_type
    WHERE t.closed_at IS NULL
)
SELECT id FROM open_jobs ORDER BY id DESC LIMIT %(limit)s
"""

# The latest closed jobs in some final states (arrays in triples): the newest of each state from the closed
# index, then the newest of those.
CONSOLE_CLOSED_JOB_IDS = """
SELECT c.id FROM unnest(%(metaservices)s::text[], %(ticket_types)s::text[], %(states)s::int[])
     AS k(metaservice, ticket_type, state)
CROSS JOIN LATERAL (
    SELECT t.id, t.closed_at FROM tickets t
    WHERE t.metaservice = k.metaservice AND t.ticket_type = k.ticket_type AND t.state = k.state
      AND t.closed_at IS NOT NULL
    ORDER BY t.closed_at DESC LIMIT %(limit)s) c
ORDER BY c.closed_at DESC, c.id DESC LIMIT %(limit)s
"""

# A job's log, its newest events (the log shows them oldest first).
CONSOLE_JOB_EVENTS = """
SELECT * FROM (SELECT id, kind, from_state, to_state, at, actor, detail FROM ticket_events
               WHERE ticket_id = %(id)s ORDER BY id DESC LIMIT %(limit)s) e
ORDER BY id
"""

# What workers gave up on or went silent over, per external state: a row per state, a small table.
CONSOLE_WORKER_STATE_STATS = """
SELECT metaservice, ticket_type, state, abandoned, stalled FROM worker_state_stats ORDER BY 1, 2, 3
"""

# Instances by how they finished, over the latest %(window)s instances (newest by the primary key): one
# overdue but not yet swept counts as timed out, as reading it would make it.
CONSOLE_STATUS_COUNTS = """
SELECT o.object_name,
       count(*) FILTER (WHERE i.finish_reason = 'completed') AS completed,
       count(*) FILTER (WHERE i.finish_reason = 'stopped') AS stopped,
       count(*) FILTER (WHERE i.finish_reason = 'timed_out'
                        OR (i.finish_reason IS NULL AND i.deadline_at <= (SELECT botfleet_now()))) AS timed_out,
       count(*) FILTER (WHERE i.finish_reason IS NULL AND i.deadline_at > (SELECT botfleet_now())) AS open,
       count(*) AS instances
FROM (SELECT object_id, finish_reason, deadline_at FROM status_instances ORDER BY id DESC LIMIT %(window)s) i
JOIN status_objects o ON o.id = i.object_id
GROUP BY o.object_name
"""

# The newest instances (of one object, or all) with the statuses set on each, oldest set first.
CONSOLE_STATUS_INSTANCES = """
SELECT i.id, i.token::text AS token, o.object_name, i.created_at, i.deadline_at, i.finished_at,
       coalesce(i.finish_reason, CASE WHEN i.deadline_at <= (SELECT botfleet_now()) THEN 'timed_out' END)
           AS finish_reason, i.stop_status,
       coalesce((SELECT array_agg(e.status_name ORDER BY e.at, e.id) FROM status_events e WHERE e.instance_id = i.id),
                '{}') AS set_statuses
FROM status_instances i JOIN status_objects o ON o.id = i.object_id
WHERE %(object_name)s::text IS NULL OR o.object_name = %(object_name)s
ORDER BY i.id DESC LIMIT %(limit)s
"""

# Each user's unread messages among their latest %(window)s (the user's part of the notifications index).
CONSOLE_UNREAD = """
SELECT u.name, c.unread, c.seen FROM users u
CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE n.read_at IS NULL) AS unread, count(*) AS seen
                    FROM (SELECT read_at FROM notifications WHERE user_name = u.name
                          ORDER BY id DESC LIMIT %(window)s) n) c
WHERE %(name)s::text IS NULL OR u.name = %(name)s
"""

# -- retention -----------------------------------------------------------------------------------------

# A final state's bot removes a batch of its tickets closed longer than the retention, with their events,
# moving them to the archive tables first when the type says so. SKIP LOCKED and small batches: nothing
# waits on these rows, and no lock is held for longer than one batch.
PURGE_CLOSED = """
WITH doomed AS (
    SELECT id FROM tickets
    WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
      AND closed_at IS NOT NULL AND closed_at <= (SELECT botfleet_now()) - %(retention_s)s * interval '1 second'
    ORDER BY closed_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), events_gone AS (
    DELETE FROM ticket_events e USING doomed d WHERE e.ticket_id = d.id RETURNING e.*
), events_kept AS (
    INSERT INTO ticket_events_archive (ticket_id, row)
    SELECT e.ticket_id, to_jsonb(e) FROM events_gone e WHERE %(archive)s RETURNING 1
), gone AS (
    DELETE FROM tickets t USING doomed d WHERE t.id = d.id RETURNING t.*
), kept AS (
    INSERT INTO tickets_archive (id, row) SELECT g.id, to_jsonb(g) FROM gone g WHERE %(archive)s RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS purged, (SELECT count(*) FROM kept) AS archived,
       (SELECT count(*) FROM events_kept) AS archived_events
"""

# -- stuck tickets -----------------------------------------------------------------------------------

# Tickets in the state, and due without a step written, for longer than the bot's stuck_after: left in
# its list (a backlog it does not keep up with, a ticket it cannot take). Time parked by a wait does not
# count, and a ticket in a handler is not due. Marked reported for this stay, in the same transaction as
# their error tickets.
MARK_STUCK = """
WITH stuck AS (
    SELECT id FROM tickets
    WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
      AND closed_at IS NULL AND stuck_reported_at IS NULL
      AND state_entered_at <= (SELECT botfleet_now()) - %(stuck_after_s)s * interval '1 second'
      AND due_at <= (SELECT botfleet_now()) - %(stuck_after_s)s * interval '1 second' AND waiting_for IS NULL
    ORDER BY state_entered_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE tickets t SET stuck_reported_at = (SELECT botfleet_now()) FROM stuck WHERE t.id = stuck.id
RETURNING t.id, t.metaservice, t.ticket_type, t.state, t.group_role,
          extract(epoch FROM (SELECT botfleet_now()) - t.state_entered_at)::float8 AS stay_s
"""

# -- messages between bots ---------------------------------------------------------------------------

# The receiving bot's channel is woken with the payload 'message', so it looks at its messages at once.
SEND_BOT_MESSAGE = """
WITH sent AS (
    INSERT INTO bot_messages (to_bot, ticket_id, kind, body, sender, created_at)
    VALUES (%(to_bot)s, %(ticket_id)s, %(kind)s, %(body)s, %(sender)s, (SELECT botfleet_now()))
    RETURNING id
)
SELECT id, pg_notify(%(channel)s, 'message') FROM sent
"""

# A batch of a bot's unhandled messages, oldest first; replicas take different ones.
# A bot's unhandled messages, taken by one of its processes for `lease_s` of real time: their on_<kind>
# functions run outside any transaction, and a message whose taker died is taken again after the lease.
TAKE_BOT_MESSAGES = f"""
WITH due AS (
    SELECT id FROM bot_messages
    WHERE to_bot = %(bot)s AND handled_at IS NULL AND coalesce(taken_until <= {LIVE_NOW}, true)
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE bot_messages m SET taken_by = %(owner)s, taken_until = {LIVE_NOW} + %(lease_s)s * interval '1 second'
FROM due WHERE m.id = due.id
RETURNING m.id, m.ticket_id, m.kind, m.body, m.sender, m.created_at
"""

# Written once, by the process that took it: a message taken again by another (its lease ran out) is not
# finished twice.
FINISH_BOT_MESSAGE = """
UPDATE bot_messages SET handled_at = (SELECT botfleet_now()), outcome = %(outcome)s, error = %(error)s
WHERE id = %(id)s AND handled_at IS NULL AND taken_by = %(owner)s
"""

# -- mail (the built-in bot botfleet-mail-1-deliver) ---------------------------------------------------

# A user's delivery window, in their time zone: open now, and when it next opens (NULL window: always open).
_LOCAL_NOW = "(((SELECT botfleet_now())) AT TIME ZONE u.tz)"
_IN_WINDOW = f"""(u.window_start IS NULL
     OR (u.window_start < u.window_end AND {_LOCAL_NOW}::time >= u.window_start AND {_LOCAL_NOW}::time < u.window_end)
     OR (u.window_start > u.window_end AND ({_LOCAL_NOW}::time >= u.window_start OR {_LOCAL_NOW}::time < u.window_end)))"""
_WINDOW_OPENS = f"""((({_LOCAL_NOW})::date + u.window_start
      + CASE WHEN {_LOCAL_NOW}::time >= u.window_start THEN interval '1 day' ELSE interval '0' END) AT TIME ZONE u.tz)"""

# Why a round (acceptance, reminder) no longer needs mailing: its ticket was accepted, closed, timed out
# (no round follows a timeout) or is gone, or a reminder's ticket is no longer its user's. NULL: still needed.
_ROUND_GONE = """CASE WHEN n.kind NOT IN ('acceptance', 'reminder') OR n.ticket_id IS NULL THEN NULL
     WHEN t.id IS NULL THEN format('ticket %%s is gone', n.ticket_id)
     WHEN t.closed_at IS NOT NULL THEN format('ticket %%s was closed', t.id)
     WHEN t.timed_out_at IS NOT NULL THEN format('ticket %%s timed out', t.id)
     WHEN n.kind = 'acceptance' AND t.assigned_user IS NOT NULL THEN format('ticket %%s was accepted by %%s', t.id, t.assigned_user)
     WHEN n.kind = 'reminder' AND t.assigned_user IS DISTINCT FROM n.user_name THEN format('ticket %%s is no longer yours', t.id)
END"""

# The pending mail due now and not leased, taken in one statement that commits before anything is sent
# (SKIP LOCKED: replicas take different rows). Mail outside its user's window moves to the window's
# opening (held: not sendable yet, so not stuck either); the rest is leased for lease_s of real time
# (statement_timestamp(), which no clock shift moves): nobody sends it again meanwhile, even if its bot dies
# between sending it and marking it. Its business due time moves on by as much too, which keeps the claims
# of code before migration 0024 off it. The first time a mail is sendable, email_sendable_at keeps when that
# began (its due time: its writing, or its window's opening): mail.stuck_after counts from there.
# Mail of a user with no address any more (removed, or the address cleared) is done with: state none, as
# for a user who never had one (else it would stay due, and the bot would come back for it at once, forever).
# A round whose reason is gone is dropped rather than sent, and one with a later round of its ticket and kind
# for the same user, pending or already sent, is merged into it: the rounds a window held go as one mail. (A
# later round may go first: one written just before the window opened, never held, is due before the rest.)
TAKE_MAIL = compact(f"""
WITH due AS (
    SELECT n.id, u.email, n.email_due_at, {_WINDOW_OPENS} AS window_opens_at,
           CASE WHEN u.email IS NULL THEN 'none' WHEN NOT {_IN_WINDOW} THEN 'held' WHEN g.gone IS NOT NULL THEN 'dropped'
                WHEN newer.id IS NOT NULL THEN 'merged' ELSE 'send' END AS fate,
           'not mailed: ' || coalesce(g.gone, format('notification %%s went instead', newer.id)) AS note
    FROM notifications n LEFT JOIN users u ON u.name = n.user_name
    LEFT JOIN tickets t ON t.id = n.ticket_id
    CROSS JOIN LATERAL (SELECT {_ROUND_GONE} AS gone) g
    LEFT JOIN LATERAL (SELECT max(s.id) AS id FROM notifications s
                       WHERE s.user_name = n.user_name AND s.ticket_id = n.ticket_id AND s.kind = n.kind
                         AND s.id > n.id AND s.email_state IN ('pending', 'sent')
                         AND n.kind IN ('acceptance', 'reminder')) newer ON true
    WHERE n.email_state = 'pending' AND n.email_due_at <= (SELECT botfleet_now())
      AND coalesce(n.email_lease_until <= statement_timestamp(), true)
    ORDER BY n.email_due_at, n.id
    LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE notifications n
SET email_state = CASE WHEN due.fate IN ('none', 'dropped', 'merged') THEN due.fate ELSE 'pending' END,
    email_note = CASE WHEN due.fate IN ('dropped', 'merged') THEN due.note END,
    email_lease_until = CASE WHEN due.fate = 'send' THEN statement_timestamp() + %(lease_s)s * interval '1 second' END,
    email_due_at = CASE WHEN due.fate = 'send' THEN (SELECT botfleet_now()) + %(lease_s)s * interval '1 second'
                        WHEN due.fate = 'held' THEN due.window_opens_at END,
    email_sendable_at = CASE WHEN due.fate = 'held' THEN n.email_sendable_at
                             ELSE coalesce(n.email_sendable_at, due.email_due_at) END
FROM due WHERE n.id = due.id
RETURNING n.id, n.user_name, due.email, n.kind, n.text, n.ticket_id, n.email_attempts, due.fate = 'send' AS to_send
""")

MAIL_SENT = """
UPDATE notifications SET email_state = 'sent', email_sent_at = (SELECT botfleet_now()),
    email_attempts = email_attempts + 1, email_error = NULL, email_lease_until = NULL
WHERE id = %(id)s
"""

# A failed try: due again after the backoff, or undeliverable after the last try. Not over a mail that is
# no longer pending (its lease ran out and another bot's try was marked first).
MAIL_FAILED = """
UPDATE notifications SET email_attempts = email_attempts + 1, email_error = %(error)s,
    email_state = CASE WHEN email_attempts + 1 >= %(max_tries)s THEN 'undeliverable' ELSE 'pending' END,
    email_due_at = (SELECT botfleet_now()) + %(backoff_s)s * power(2, email_attempts) * interval '1 second',
    email_lease_until = NULL
WHERE id = %(id)s AND email_state = 'pending'
RETURNING email_state, email_attempts
"""

# A leased mail that its batch did not get to: due again now, no try counted.
MAIL_UNTRIED = """
UPDATE notifications SET email_due_at = (SELECT botfleet_now()), email_lease_until = NULL
WHERE id = %(id)s AND email_state = 'pending'
"""

# The sweeper: notifications done with mail (sent, or never to be mailed) older than the retention.
PRUNE_NOTIFICATIONS = """
DELETE FROM notifications
WHERE id IN (SELECT id FROM notifications WHERE email_state IN ('sent', 'none', 'dropped', 'merged')
             AND created_at < (SELECT botfleet_now()) - %(keep_s)s * interval '1 second' LIMIT 1000)
"""

# Mail problems (undeliverable, stuck) go to one open error ticket at a time, not one each: while the
# mail server is down, the error ticket's own notifications to the operators fail too, and one ticket
# each would feed itself. The lock keeps two replicas from opening two; a later problem is counted into
# the open ticket's payload. Once an operator resolves it, the next problem opens a new one.
LOCK_MAIL_PROBLEMS = "SELECT pg_advisory_xact_lock(hashtext('botfleet mail problems'))"

FOLD_MAIL_PROBLEM = """
UPDATE tickets SET payload = payload || jsonb_build_object(
    'problems', coalesce((payload->>'problems')::int, 1) + 1, 'last_reason', %(reason)s::text,
    'last_notification_id', %(notification_id)s::bigint, 'last_at', (SELECT botfleet_now()))
WHERE id = (SELECT id FROM tickets
            WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND closed_at IS NULL
              AND payload ? 'mail_problem'
            ORDER BY id LIMIT 1)
RETURNING id
"""

# Leased mail is due once both its due time and its lease have passed (a bot that died with it).
NEXT_MAIL_DUE = """
SELECT extract(epoch FROM min(greatest(email_due_at - (SELECT botfleet_now()),
                                       coalesce(email_lease_until - statement_timestamp(), interval '0'))))::float8
       AS due_in_s
FROM notifications WHERE email_state = 'pending'
"""

# The sweeper: mail still pending long after it became sendable (a server down for hours, a bot that does not
# run), each reported once. Time held for a delivery window does not count: until it is first taken in its
# window it is due at the window's opening, and from then on email_sendable_at says since when.
_SENDABLE_SINCE = "coalesce(email_sendable_at, email_due_at)"
MARK_STUCK_MAIL = f"""
UPDATE notifications SET email_stuck_reported_at = (SELECT botfleet_now())
WHERE id IN (SELECT id FROM notifications
             WHERE email_state = 'pending' AND email_stuck_reported_at IS NULL
               AND {_SENDABLE_SINCE} < (SELECT botfleet_now()) - %(stuck_after_s)s * interval '1 second'
             LIMIT 100 FOR UPDATE SKIP LOCKED)
RETURNING id, user_name, ticket_id, email_attempts, email_error,
          extract(epoch FROM (SELECT botfleet_now()) - {_SENDABLE_SINCE})::float8 AS age_s
"""

# The mail queue, for `botfleet status` and the metrics (the pending rows are on their own index).
MAIL_QUEUE = """
SELECT count(*) AS pending, count(*) FILTER (WHERE email_attempts > 0) AS retrying,
       extract(epoch FROM min(created_at))::float8 AS oldest
FROM notifications WHERE email_state = 'pending'
"""

# -- API tokens ----------------------------------------------------------------------------------------

ADD_TOKEN = """
INSERT INTO api_tokens (name, token_hash, scopes, user_name) VALUES (%(name)s, %(token_hash)s, %(scopes)s, %(user)s)
ON CONFLICT (name) DO NOTHING RETURNING name
"""

LIST_TOKENS = "SELECT name, scopes, user_name, created_at, revoked_at FROM api_tokens ORDER BY name"

REVOKE_TOKEN = """
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, (SELECT botfleet_now())) WHERE name = %(name)s RETURNING name
"""

# The name, scopes and user of a live token, by its hash.
TOKEN_SCOPES = "SELECT name, scopes, user_name FROM api_tokens WHERE token_hash = %(token_hash)s AND revoked_at IS NULL"

# POST /tickets with an Idempotency-Key: requests with the same token and key are taken one at a time,
# and all but the first find the ticket it made.
LOCK_IDEMPOTENCY_KEY = "SELECT pg_advisory_xact_lock(hashtext(%(token)s), hashtext(%(key)s))"

FIND_IDEMPOTENCY_KEY = "SELECT ticket_id FROM idempotency_keys WHERE token_name = %(token)s AND key = %(key)s"

ADD_IDEMPOTENCY_KEY = """
INSERT INTO idempotency_keys (token_name, key, ticket_id) VALUES (%(token)s, %(key)s, %(ticket_id)s)
"""

# -- the fleet's lock ------------------------------------------------------------------------------------



READ_FLEET_LOCK = f"SELECT {_lock_columns()} FROM fleet_lock"

# An admin's lock or unlock. While an exclusive ticket holds the fleet closed, it changes what the
# fleet returns to instead, so the run is not interrupted and its end lands in the state asked for.
SET_FLEET_LOCK = f"""
WITH changed AS (
    UPDATE fleet_lock f SET
        state = CASE WHEN f.state = 'closed' THEN f.state ELSE %(state)s END,
        reason = CASE WHEN f.state = 'closed' THEN f.reason ELSE %(reason)s END,
        set_by = CASE WHEN f.state = 'closed' THEN f.set_by ELSE %(by)s END,
        set_at = CASE WHEN f.state = 'closed' THEN f.set_at ELSE botfleet_now() END,
        before = CASE WHEN f.state = 'closed' THEN jsonb_build_object(
            'state', %(state)s, 'reason', %(reason)s::text, 'set_by', %(by)s::text, 'set_at', botfleet_now()) END
    RETURNING {_lock_columns()}
)
SELECT changed.*, (SELECT count(*) FROM (SELECT pg_notify('{LOCK_CHANNEL}', changed.state)) n) AS notified
FROM changed
"""

# `botfleet up`: a fresh start of the fleet starts it open, whatever it was when it went down.
RESET_FLEET_LOCK = f"""
UPDATE fleet_lock SET state = 'open', reason = NULL, set_by = %(by)s, set_at = botfleet_now(),
                      holder_ticket = NULL, before = NULL
RETURNING {_lock_columns()}
"""

# `botfleet up`: the registered processes of other hosts that are alive now (not stopped, heard from within the
# hung threshold). While any is, a start is one host joining a running fleet, and leaves the lock as it is.
ALIVE_ON_OTHER_HOSTS = f"""
SELECT host, coalesce(process_name, bot_name) AS name, pid FROM bot_processes
WHERE host <> %(host)s AND stopped_at IS NULL AND heartbeat_at > {LIVE_NOW} - %(alive_s)s * interval '1 second'
ORDER BY host, name
"""

# A due ticket of an exclusive type closes the fleet and holds it: nothing new is claimed from now on,
# and it is claimed itself once no other ticket is leased (the work in hand has finished).
TAKE_EXCLUSIVE = f"""
WITH candidate AS (
    SELECT id FROM tickets
    WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
      AND closed_at IS NULL AND due_at <= (SELECT botfleet_now())
    ORDER BY due_at LIMIT 1
), taken AS (
    UPDATE fleet_lock f SET
        state = 'closed', reason = 'exclusive ticket ' || c.id || ' runs alone', set_by = %(by)s,
        set_at = botfleet_now(), holder_ticket = c.id,
        before = jsonb_build_object('state', f.state, 'reason', f.reason, 'set_by', f.set_by, 'set_at', f.set_at)
    FROM candidate c
    WHERE f.state = 'open' OR (%(runs_when_locked)s AND f.state = 'ops_only')
    RETURNING f.holder_ticket
)
SELECT (SELECT count(*) FROM (SELECT pg_notify('{LOCK_CHANNEL}', 'closed') FROM taken) n) AS taken,
       EXISTS (SELECT 1 FROM fleet_lock f JOIN tickets t ON t.id = f.holder_ticket
               WHERE t.metaservice = %(metaservice)s AND t.ticket_type = %(ticket_type)s
                 AND t.state = %(state)s AND t.closed_at IS NULL) AS holds_here
"""

# -- jobs and operations (seed 000's OPERATIONS) ------------------------------------------------------

# The jobs: tickets of the job types (arrays of metaservice and type, in pairs), with what /operations
# derives their status from, and the time of their latest event. Newest first by the sort asked for.
_JOB_TYPES = """(t.metaservice, t.ticket_type) IN (
    SELECT * FROM unnest(%(metaservices)s::text[], %(ticket_types)s::text[]))"""

_OPERATION_COLUMNS = f"""t.id, t.job_name, t.object_type, t.object_id, t.metaservice, t.ticket_type, t.state, t.payload, t.created_at, t.closed_at, t.step,
       coalesce(t.start_after > (SELECT botfleet_now()), false) AS sleeping,
       coalesce(t.lease_expires_at > {LIVE_NOW}, false) OR t.waiting_for IS NOT NULL AS held,
       t.waiting_for, t.lease_owner, t.lease_expires_at <= {LIVE_NOW} AS lease_dead,
       coalesce((SELECT max(e.at) FROM ticket_events e WHERE e.ticket_id = t.id), t.created_at) AS last_action"""

LIST_OPERATIONS = f"""
SELECT * FROM (SELECT {_OPERATION_COLUMNS} FROM tickets t WHERE {_JOB_TYPES}) o
ORDER BY CASE WHEN %(sort)s = 'created' THEN o.created_at ELSE o.last_action END DESC, o.id DESC
LIMIT %(limit)s
"""

OPERATIONS_BY_ID = f"SELECT {_OPERATION_COLUMNS} FROM tickets t WHERE t.id = ANY(%(ids)s)"
# GET /job: a job type's open jobs, oldest first (a NULL limit: all).
OPEN_JOBS = f"""
SELECT {_OPERATION_COLUMNS} FROM tickets t
WHERE t.metaservice = %(metaservice)s AND t.ticket_type = %(ticket_type)s AND t.closed_at IS NULL
ORDER BY t.id LIMIT %(limit)s
"""

# DELETE /operations: an object's jobs, locked, for the caller to tell the running ones from the rest.
OBJECT_JOBS = f"""
SELECT {_OPERATION_COLUMNS} FROM tickets t
WHERE {_JOB_TYPES} AND t.object_type = %(object_type)s AND t.object_id = %(object_id)s
ORDER BY t.id FOR UPDATE OF t
"""

# Jobs with their events, in one statement.
DELETE_JOBS = """
WITH events_gone AS (
    DELETE FROM ticket_events e WHERE e.ticket_id = ANY(%(ids)s)
), gone AS (
    DELETE FROM tickets t WHERE t.id = ANY(%(ids)s) RETURNING t.id
)
SELECT coalesce(array_agg(id ORDER BY id), '{}') AS deleted FROM gone
"""

# A job's log entry when it starts (first taken by a bot or a worker, or moved on by hand): once.
JOB_STARTED = """
INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor)
SELECT t.id, t.step, 'started', t.state, t.state, %(actor)s FROM tickets t
WHERE t.id = ANY(%(ids)s) AND NOT EXISTS (SELECT 1 FROM ticket_events e WHERE e.ticket_id = t.id AND e.kind = 'started')
ON CONFLICT DO NOTHING
"""

# -- webhooks ----------------------------------------------------------------------------------------------

# The webhook bot's channel (bf.botfleet.webhook.1) is notified by migration 0021's trigger, which fills
# the outbox. The next deliveries that are due, each the oldest pending one of its ticket and receiver (so a ticket's
# changes arrive in order, and replicas never send two of one ticket at once). Taken with a lease of real
# time (statement_timestamp(), which no clock shift moves), committed before the POST: a delivery whose
# bot dies is due again after it; the try counts. next_try_at moves on by as much too, which keeps the
# claims of code before migration 0024 off it.
TAKE_WEBHOOKS = """
WITH due AS (
    SELECT o.id FROM webhook_outbox o
    WHERE o.state = 'pending' AND o.next_try_at <= (SELECT botfleet_now())
      AND coalesce(o.lease_until <= statement_timestamp(), true)
      AND NOT EXISTS (SELECT 1 FROM webhook_outbox p
                      WHERE p.state = 'pending' AND p.ticket_id = o.ticket_id AND p.url = o.url AND p.id < o.id)
    ORDER BY o.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_outbox o
SET attempts = o.attempts + 1, lease_until = statement_timestamp() + %(lease_s)s * interval '1 second',
    next_try_at = (SELECT botfleet_now()) + %(lease_s)s * interval '1 second'
FROM due WHERE o.id = due.id
RETURNING o.id, o.ticket_id, o.event_id, o.metaservice, o.ticket_type, o.url, o.from_state, o.to_state, o.at,
          o.attempts
"""

WEBHOOK_DELIVERED = """
UPDATE webhook_outbox SET state = 'delivered', done_at = (SELECT botfleet_now()), last_error = NULL, lease_until = NULL
WHERE id = %(id)s
"""

# A failed try: again after a doubling backoff, or failed for good after max_tries (or at once: `final`).
# Not over a delivery that is no longer pending (its lease ran out and another bot's try was marked first).
WEBHOOK_FAILED_TRY = """
UPDATE webhook_outbox SET last_error = %(error)s, lease_until = NULL,
    state = CASE WHEN %(final)s OR attempts >= %(max_tries)s THEN 'failed' ELSE 'pending' END,
    done_at = CASE WHEN %(final)s OR attempts >= %(max_tries)s THEN (SELECT botfleet_now()) END,
    next_try_at = (SELECT botfleet_now())
        + least(%(backoff_s)s * power(2, attempts - 1), %(max_backoff_s)s) * interval '1 second'
WHERE id = %(id)s AND state = 'pending'
RETURNING state
"""

# A leased delivery is due once both its next try and its lease have passed (a bot that died with it).
# Only the head of each ticket's and receiver's line: a row behind an older pending one (its backoff, its
# lease) is not due, however old its own next_try_at, and counting it would wake the bot in a loop.
NEXT_WEBHOOK_DUE = """
SELECT extract(epoch FROM min(greatest(o.next_try_at - (SELECT botfleet_now()),
                                       coalesce(o.lease_until - statement_timestamp(), interval '0'))))::float8
       AS due_in_s
FROM webhook_outbox o WHERE o.state = 'pending'
  AND NOT EXISTS (SELECT 1 FROM webhook_outbox p
                  WHERE p.state = 'pending' AND p.ticket_id = o.ticket_id AND p.url = o.url AND p.id < o.id)
"""

PRUNE_WEBHOOKS = """
DELETE FROM webhook_outbox WHERE id IN (
    SELECT id FROM webhook_outbox
    WHERE done_at IS NOT NULL
      AND done_at < (SELECT botfleet_now()) - CASE WHEN state = 'delivered' THEN %(keep_delivered_s)s
                                                   ELSE %(keep_failed_s)s END * interval '1 second'
    LIMIT 1000)
"""

# For `botfleet status` and the metrics.
WEBHOOK_QUEUE = """
SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'pending' AND attempts > 0) AS retrying,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       extract(epoch FROM min(at) FILTER (WHERE state = 'pending'))::float8 AS oldest
FROM webhook_outbox WHERE state <> 'delivered'
"""

# -- the JOBSWEEPER ----------------------------------------------------------------------------------------

# Seconds until the next run is due: `every` after the latest run began (0 for the first).
SWEEP_DUE_IN = """
SELECT coalesce(extract(epoch FROM max(created_at) + %(every_s)s * interval '1 second'
                               - (SELECT botfleet_now())), 0)::float8 AS due_in_s
FROM tickets WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s
"""

# What purged or deleted tickets leave behind, a batch per statement: history, webhooks already done
# with, notifications no longer waiting to be mailed, idempotency keys.
_ORPHAN_BATCH = 5000
TIDY_STATEMENTS = {
    "events": f"""
DELETE FROM ticket_events WHERE id IN (
    SELECT e.id FROM ticket_events e WHERE NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = e.ticket_id)
    LIMIT {_ORPHAN_BATCH})""",
    "webhooks": f"""
DELETE FROM webhook_outbox WHERE id IN (
    SELECT o.id FROM webhook_outbox o
    WHERE o.state <> 'pending' AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = o.ticket_id)
    LIMIT {_ORPHAN_BATCH})""",
    "notifications": f"""
DELETE FROM notifications WHERE id IN (
    SELECT n.id FROM notifications n
    WHERE n.ticket_id IS NOT NULL AND n.email_state <> 'pending'
      AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = n.ticket_id)
    LIMIT {_ORPHAN_BATCH})""",
    # A retry comes within minutes; a day is plenty, and a key whose ticket is gone replays nothing.
    "idempotency_keys": """
DELETE FROM idempotency_keys k
WHERE k.created_at < (SELECT botfleet_now()) - interval '1 day'
   OR NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = k.ticket_id)""",
    # Status model instances (seed 001) finished a day ago, with the statuses set on them: long after the
    # service that created one has read how it finished.
    "status_instances": f"""
DELETE FROM status_instances WHERE id IN (
    SELECT id FROM status_instances WHERE finished_at < (SELECT botfleet_now()) - interval '1 day'
    LIMIT {_ORPHAN_BATCH})""",
    # Progress of a hold that ended some way that does not clear it (a ticket gone, or its lifetime timed
    # out as its worker fell silent): not a foreign key, whose triggers would cost every ticket update.
    "ticket_progress": f"""
DELETE FROM ticket_progress p WHERE (p.ticket_id, p.message) IN (
    SELECT q.ticket_id, q.message FROM ticket_progress q
    WHERE NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = q.ticket_id AND t.lease_owner LIKE {_WORKER_LEASE})
    LIMIT {_ORPHAN_BATCH})""",
}


# -- status models (seed 001, statusek) --------------------------------------------------------------

# A full sync writes the config's status models here, so that events can name the ids of their statuses.
UPSERT_STATUS_OBJECT = """
INSERT INTO status_objects (object_name, description) VALUES (%(object_name)s, %(description)s)
ON CONFLICT (object_name) DO UPDATE SET description = EXCLUDED.description
RETURNING id
"""

UPSERT_OBJECT_STATUS = """
INSERT INTO object_statuses (object_id, name, description, type)
VALUES (%(object_id)s, %(name)s, %(description)s, %(type)s)
ON CONFLICT (object_id, name) DO UPDATE SET description = EXCLUDED.description, type = EXCLUDED.type
"""

# The expiry bot sleeps until the soonest deadline it knows of: a new instance wakes it to look again.
CREATE_STATUS_INSTANCE = f"""
WITH new AS (
    INSERT INTO status_instances (object_id, timeout_s, created_at, deadline_at)
    SELECT id, %(timeout_s)s, (SELECT botfleet_now()), (SELECT botfleet_now()) + %(timeout_s)s * interval '1 second'
    FROM status_objects WHERE object_name = %(object_name)s
    RETURNING token
)
SELECT token::text AS token, pg_notify('{STATUS_CHANNEL}', '') FROM new
"""

# An instance by its token, with the statuses set on it. One whose timeout has passed is finished
# here and now (timed_out, at its deadline) if no sweep has got to it yet: whoever asks first.
READ_STATUS_INSTANCE = """
WITH expired AS (
    UPDATE status_instances SET finished_at = deadline_at, finish_reason = 'timed_out'
    WHERE token = %(token)s AND finished_at IS NULL AND deadline_at <= (SELECT botfleet_now())
    RETURNING id
)
SELECT i.id, i.token::text AS token, o.object_name, i.version,
       coalesce(i.finish_reason, (SELECT 'timed_out' FROM expired)) AS finish_reason, i.stop_status,
       coalesce((SELECT array_agg(e.status_name ORDER BY e.id) FROM status_events e WHERE e.instance_id = i.id),
                '{}') AS set_statuses
FROM status_instances i JOIN status_objects o ON o.id = i.object_id
WHERE i.token = %(token)s
"""

# A status set, only if nothing was set on the instance since it was read (version), it has not
# finished and its timeout has not passed: else nothing is written, and the caller reads it again.
# The row lock of the UPDATE orders concurrent calls; the unique key of status_events backs it.
SET_STATUS = """
WITH instance AS (
    UPDATE status_instances SET version = version + 1,
        finished_at = CASE WHEN %(finish_reason)s::text IS NOT NULL THEN (SELECT botfleet_now()) END,
        finish_reason = %(finish_reason)s, stop_status = %(stop_status)s
    WHERE id = %(id)s AND version = %(version)s AND finished_at IS NULL
      AND deadline_at > (SELECT botfleet_now())
    RETURNING id
)
INSERT INTO status_events (instance_id, status_name, message, at)
SELECT id, %(status)s, %(message)s, (SELECT botfleet_now()) FROM instance
RETURNING id
"""

# The statuses set on an instance, oldest first, with their model's ids, description and type.
STATUS_EVENTS = """
SELECT e.status_name, e.message, e.at, s.id AS status_id, s.description, s.type, i.object_id
FROM status_events e JOIN status_instances i ON i.id = e.instance_id
LEFT JOIN object_statuses s ON s.object_id = i.object_id AND s.name = e.status_name
WHERE e.instance_id = %(id)s
ORDER BY e.at, e.id
"""

# The sweep: instances whose timeout has passed are finished (timed_out) in batches, and the next
# deadline to come says when to look again.
EXPIRE_STATUS_INSTANCES = """
WITH due AS (
    SELECT id FROM status_instances
    WHERE finished_at IS NULL AND deadline_at <= (SELECT botfleet_now())
    ORDER BY deadline_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE status_instances i SET finished_at = i.deadline_at, finish_reason = 'timed_out'
    FROM due WHERE i.id = due.id
    RETURNING i.id
)
SELECT (SELECT count(*) FROM expired) AS expired,
       extract(epoch FROM (SELECT min(deadline_at) FROM status_instances
                           WHERE finished_at IS NULL AND deadline_at > (SELECT botfleet_now()))
                          - (SELECT botfleet_now()))::float AS next_in_s
"""

# Instances per object and how they finished (open: not yet), for the metrics and the CLI.
STATUS_INSTANCE_COUNTS = """
SELECT o.object_name, coalesce(i.finish_reason, 'open') AS finish_reason, count(*) AS instances
FROM status_instances i JOIN status_objects o ON o.id = i.object_id
GROUP BY 1, 2 ORDER BY 1, 2
"""

# -- pulling workers (seed 002) ----------------------------------------------------------------------
# A ticket held by a worker is leased to 'worker:<name>' (WORKER_LEASE_PREFIX) until the state's
# stall_timeout after the worker's last word about it, on real time (LIVE_NOW); its due_at is the same
# moment in business time, and NEXT_STALL tells the state's bot (the controller) when the first hold
# stalls, so it wakes then and takes the ticket back.

# The worker's row, made on first contact and locked for the request; holds: it still holds its ticket.
WORKER_GATE = f"""
WITH seen AS (
    INSERT INTO workers (name, session, first_seen_at, last_contact_at)
    VALUES (%(name)s, %(session)s, {LIVE_NOW}, {LIVE_NOW})
    ON CONFLICT (name) DO UPDATE SET last_contact_at = {LIVE_NOW}
    RETURNING name, session, ticket_id
)
SELECT s.session, s.ticket_id, h.stalls_at, h.stalls_at IS NOT NULL AS holds
FROM seen s
LEFT JOIN LATERAL (SELECT t.lease_expires_at AS stalls_at FROM tickets t
                   WHERE t.id = s.ticket_id AND t.lease_owner = %(lease_owner)s
                     AND t.lease_expires_at > {LIVE_NOW} AND t.closed_at IS NULL) h ON true
"""


def _take_back(condition: str, lock: str) -> str:
    """Tickets whose hold ends without a finish, back in the queue: one attempt more, their partial progress
    kept in the event and cleared, counted for the state; due again where they first queued, so the oldest
    stays first."""
    return compact(f"""
WITH back AS (
    SELECT id, lease_owner FROM tickets WHERE {condition} AND lease_owner LIKE {_WORKER_LEASE} AND closed_at IS NULL
    FOR UPDATE {lock}
), moved AS (
    UPDATE tickets t SET lease_owner = NULL, lease_expires_at = NULL, step = t.step + 1,
                         attempts = t.attempts + CASE WHEN %(kind)s = 'released' THEN 0 ELSE 1 END,
                         due_at = least(t.state_entered_at, (SELECT botfleet_now()))
    FROM back WHERE t.id = back.id
    RETURNING t.id, t.step, t.metaservice, t.ticket_type, t.state, t.attempts, back.lease_owner
), ev AS (
    INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail)
    SELECT m.id, m.step, %(kind)s, m.state, m.state, %(actor)s,
           jsonb_build_object('worker', substr(m.lease_owner, {len(WORKER_LEASE_PREFIX) + 1}), 'attempt', m.attempts,
                              'progress', (SELECT coalesce(jsonb_object_agg(p.message, p.at), '{{}}')
                                           FROM ticket_progress p WHERE p.ticket_id = m.id))
    FROM moved m
), cleared AS (
    DELETE FROM ticket_progress p USING moved m WHERE p.ticket_id = m.id
), counted AS (
    INSERT INTO worker_state_stats AS s (metaservice, ticket_type, state, abandoned, stalled)
    SELECT metaservice, ticket_type, state, count(*) FILTER (WHERE %(kind)s = 'abandoned'),
           count(*) FILTER (WHERE %(kind)s = 'stalled')
    FROM moved GROUP BY 1, 2, 3
    ON CONFLICT (metaservice, ticket_type, state) DO UPDATE
    SET abandoned = s.abandoned + excluded.abandoned, stalled = s.stalled + excluded.stalled
)
SELECT id, metaservice, ticket_type, state, attempts, {CHANNEL_SQL.format(t='moved')} AS channel FROM moved
""")


# A worker that asks for more while it holds a ticket gives that one up (kind 'abandoned').
ABANDON_HOLD = _take_back("id = %(ticket_id)s AND lease_owner = %(lease_owner)s", "")
# A person acting on a ticket a worker holds (kind 'released'): the worker's later messages answer false.
RELEASE_HOLD = _take_back("id = %(ticket_id)s", "")
# Holds of the state whose worker fell silent past stall_timeout (kind 'stalled'): the controller's sweep.
TAKE_BACK_STALLED = _take_back(f"""metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s
    AND state = %(state)s AND due_at <= (SELECT botfleet_now()) AND lease_expires_at <= {LIVE_NOW}""",
                               "SKIP LOCKED")


def _hand_out(state_condition: str) -> str:
    """The oldest due ticket of the type's external states (none abandoned max_attempts times), now held
    by the worker, its progress of any earlier hold cleared; the worker's row says so."""
    return compact(f"""
WITH work AS (
    SELECT * FROM unnest(%(states)s::int[], %(stall_s)s::float8[], %(max_attempts)s::int[])
        AS w(state, stall_s, max_attempts)
), next AS (
    SELECT t.id FROM tickets t
    WHERE t.metaservice = %(metaservice)s AND t.ticket_type = %(ticket_type)s AND {state_condition}
      AND t.closed_at IS NULL AND t.due_at <= (SELECT botfleet_now())
      AND t.attempts < (SELECT max_attempts FROM work WHERE work.state = t.state)
      -- A hold whose worker fell silent is due too: the controller takes it back (counted, its progress
      -- kept in the event) before anyone else gets it.
      AND (t.lease_owner IS NULL OR t.lease_owner NOT LIKE {_WORKER_LEASE})
      AND ((SELECT state FROM fleet_lock) = 'open'
           OR (%(runs_when_locked)s AND (SELECT state FROM fleet_lock) = 'ops_only'))
    ORDER BY t.due_at, t.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), held AS (
    UPDATE tickets t
    SET lease_owner = %(lease_owner)s, step = t.step + 1,
        lease_expires_at = {LIVE_NOW} + work.stall_s * interval '1 second',
        due_at = (SELECT botfleet_now()) + work.stall_s * interval '1 second'
    FROM next, work WHERE t.id = next.id AND work.state = t.state
    RETURNING {", ".join("t." + c.strip() for c in _READ_COLUMNS.split(","))}
), ev AS (
    INSERT INTO ticket_events (ticket_id, step, kind, from_state, to_state, actor, detail)
    SELECT id, step, 'handed_out', state, state, %(lease_owner)s,
           jsonb_build_object('worker', %(name)s::text, 'attempt', attempts + 1)
    FROM held
), cleared AS (
    DELETE FROM ticket_progress p USING held WHERE p.ticket_id = held.id
), w AS (
    UPDATE workers SET session = %(session)s, ticket_id = (SELECT id FROM held), last_contact_at = {LIVE_NOW}
    WHERE name = %(name)s
), wake AS (
    -- The controller sets its timer for the moment this hold would stall.
    SELECT pg_notify({CHANNEL_SQL.format(t='held')}, '') FROM held
)
SELECT held.* FROM held, (SELECT count(*) FROM wake) n
""")


HAND_OUT = _hand_out("t.state = %(state)s")  # one external state: the claim index gives the order
HAND_OUT_ANY = _hand_out("t.state = ANY(%(states)s)")

# A progress message of a held ticket, recorded once; the hold is renewed only by a message recorded.
# `work` maps "<metaservice>/<type>/<state>" to {"messages": [...], "stall_s": ...} of each external state.
RECORD_PROGRESS = f"""
WITH held AS (
    SELECT t.id, %(work)s::jsonb -> (t.metaservice || '/' || t.ticket_type || '/' || t.state) AS work
    FROM tickets t
    WHERE t.id = %(id)s AND t.lease_owner = %(lease_owner)s AND t.lease_expires_at > {LIVE_NOW}
      AND t.closed_at IS NULL
    FOR UPDATE
), rec AS (
    INSERT INTO ticket_progress (ticket_id, message)
    SELECT id, %(message)s FROM held WHERE (work -> 'messages') ? %(message)s
    ON CONFLICT DO NOTHING
    RETURNING ticket_id
), renewed AS (
    UPDATE tickets t
    SET lease_expires_at = {LIVE_NOW} + (held.work ->> 'stall_s')::float8 * interval '1 second',
        due_at = (SELECT botfleet_now()) + (held.work ->> 'stall_s')::float8 * interval '1 second'
    FROM rec, held WHERE t.id = rec.ticket_id AND held.id = rec.ticket_id
    RETURNING t.id
)
SELECT count(*) AS recorded FROM renewed
"""

# A finish: the hold's progress, cleared, for the transition's event.
TAKE_PROGRESS = "DELETE FROM ticket_progress WHERE ticket_id = %(id)s RETURNING message, at"

# Tickets of an external state abandoned max_attempts times: the controller fails them. Due, as CLAIM
# has it: no live lease (a worker's hold is never due before it stalls, and is taken back first).
CLAIM_EXHAUSTED = _claim("state = %(state)s", due="""due_at <= (SELECT botfleet_now())
      AND attempts >= %(max_attempts)s
      AND ((SELECT state FROM fleet_lock) = 'open'
           OR (%(runs_when_locked)s AND (SELECT state FROM fleet_lock) = 'ops_only'))""")

# Seconds until the first hold of the state stalls, on real time (None: no hold).
NEXT_STALL = f"""
SELECT extract(epoch FROM min(lease_expires_at) - {LIVE_NOW})::float8 AS due_in_s FROM tickets
WHERE metaservice = %(metaservice)s AND ticket_type = %(ticket_type)s AND state = %(state)s
  AND closed_at IS NULL AND lease_owner LIKE {_WORKER_LEASE}
"""

LIST_WORKERS = f"""
SELECT w.name, w.session, w.first_seen_at, w.last_contact_at, t.id AS ticket_id, t.metaservice, t.ticket_type,
       t.state, t.lease_expires_at AS stalls_at
FROM workers w
LEFT JOIN tickets t ON t.id = w.ticket_id AND t.lease_owner = '{WORKER_LEASE_PREFIX}' || w.name
     AND t.lease_expires_at > {LIVE_NOW} AND t.closed_at IS NULL
ORDER BY w.name
"""

METRIC_WORKER_STATES = f"""
WITH held AS (
    SELECT metaservice, ticket_type, state, count(*) AS held FROM tickets
    WHERE closed_at IS NULL AND lease_owner LIKE {_WORKER_LEASE} AND lease_expires_at > {LIVE_NOW}
    GROUP BY 1, 2, 3
)
SELECT coalesce(h.metaservice, s.metaservice) AS metaservice, coalesce(h.ticket_type, s.ticket_type) AS ticket_type,
       coalesce(h.state, s.state) AS state, coalesce(h.held, 0) AS held, coalesce(s.abandoned, 0) AS abandoned,
       coalesce(s.stalled, 0) AS stalled
FROM held h FULL JOIN worker_state_stats s USING (metaservice, ticket_type, state)
ORDER BY 1, 2, 3
"""

METRIC_WORKERS = "SELECT name, extract(epoch FROM last_contact_at)::float8 AS last_contact_s FROM workers ORDER BY name"

WAKE_BOT = "SELECT pg_notify(%(channel)s, '')"

# The connection budget (common/store/connections.py): the server's slots, and the client connections that
# are not this host's fleet. The fleet's run as this role, from this connection's client address, named after
# their process (up to a first ':'). Without pg_read_all_stats another role's sessions show no backend_type:
# counted when they are in a database, as a client's are.
SERVER_CONNECTION_SLOTS = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
       (SELECT count(*) FROM pg_stat_activity
        WHERE (backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL))
          AND pid <> pg_backend_pid()
          AND NOT (usename IS NOT DISTINCT FROM session_user AND client_addr IS NOT DISTINCT FROM inet_client_addr()
                   AND split_part(application_name, ':', 1) = ANY(%(fleet_names)s)))::int AS used_by_others
"""

# -- the console: tickets -----------------------------------------------------------------------------

# The conditions of the console's ticket list, bulk actions and counts, one per filter given. The statements
# below join only those asked for, so each combination is a statement of its own and the planner sees plain
# predicates (the partial indexes' `closed_at IS NULL`, `state = $n`), never `($n IS NULL OR ...)`, which a
# cached generic plan could not use an index for.
CONSOLE_TICKET_CONDITIONS = {
    "metaservice": "metaservice = %(metaservice)s",
    "ticket_type": "ticket_type = %(ticket_type)s",
    "state": "state = %(state)s",
    "open": "closed_at IS NULL",
    "closed": "closed_at IS NOT NULL",
    "group": "group_role = %(group)s",
    "assignee": "assigned_user = %(assignee)s",
    "creator": "creator = %(creator)s",
    "created_from": "created_at >= %(created_from)s",
    "created_to": "created_at < %(created_to)s",
    "contains": "payload @> %(contains)s::jsonb",
    "q": "payload::text ILIKE %(q_pattern)s",
    "before": "id < %(before)s",
    # A payload search reads at most the newest ids of a window (no index serves it): these ids and above.
    "window_from": "id >= %(window_from)s",
    # A bulk action acts on the tickets seen at its preview: none created after it.
    "max_id": "id <= %(max_id)s",
    "after": "id > %(after)s",
}


def console_ticket_where(names) -> str:
    return " AND ".join(CONSOLE_TICKET_CONDITIONS[name] for name in names) or "true"


def console_ticket_page(names) -> str:
    """A page of the list, newest first: the ids below the cursor (keyset), `limit` of them."""
    return f"SELECT {_READ_COLUMNS} FROM tickets WHERE {console_ticket_where(names)} ORDER BY id DESC LIMIT %(limit)s"


def console_ticket_count(names) -> str:
    """How many match, counting at most `cap`: a count that stops early stays cheap on a big table."""
    return f"SELECT count(*) AS n FROM (SELECT 1 FROM tickets WHERE {console_ticket_where(names)} LIMIT %(cap)s) c"


def console_ticket_estimate(names) -> str:
    """The planner's estimate of how many match (its plan as JSON: the top node's "Plan Rows")."""
    return f"EXPLAIN (FORMAT JSON) SELECT 1 FROM tickets WHERE {console_ticket_where(names)}"


def console_bulk_count(names) -> str:
    """What a bulk action would act on: how many match now, and the newest id then (its bound later)."""
    return (f"SELECT count(*) AS n, (SELECT max(id) FROM tickets) AS max_id FROM tickets "
            f"WHERE {console_ticket_where(names)}")


def console_bulk_lock(names) -> str:
    """The next batch of a bulk action, by id, each row locked as sql.LOCK_TICKET does; a row another session
    is changing right now is passed over (and reported as left) rather than waited for."""
    return (f"SELECT {TICKET_COLUMNS}, lease_expires_at > {LIVE_NOW} AS leased FROM tickets "
            f"WHERE {console_ticket_where(names)} ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED")


# A count tried under a time budget (its transaction's statement_timeout), the estimate shown past it.
CONSOLE_COUNT_BUDGET = "SELECT set_config('statement_timeout', %(budget)s, true)"

CONSOLE_MAX_TICKET_ID = "SELECT coalesce(max(id), 0) AS max_id FROM tickets"

# A ticket's children, the messages it caused, its webhook deliveries: each read by ticket_id, newest kept.
CONSOLE_TICKET_CHILDREN = """
SELECT id, metaservice, ticket_type, state, closed_at, created_at FROM tickets
WHERE parent_id = %(id)s ORDER BY id LIMIT %(limit)s
"""

CONSOLE_TICKET_NOTIFICATIONS = """
SELECT id, user_name, kind, text, created_at, read_at, email_state, email_error, email_sent_at FROM notifications
WHERE ticket_id = %(id)s ORDER BY id DESC LIMIT %(limit)s
"""

CONSOLE_TICKET_WEBHOOKS = """
SELECT id, url, from_state, to_state, at, state, attempts, last_error, done_at, next_try_at FROM webhook_outbox
WHERE ticket_id = %(id)s ORDER BY id DESC LIMIT %(limit)s
"""

# -- the console (api/console/) ------------------------------------------------------------------------

# Each bot on each host that runs it: the host's last verdict, its processes' newest heartbeat (real time),
# and its restarts by reason (every host's: the counter is the fleet's). A bot on no known host takes the
# heartbeat of its processes on any.
CONSOLE_FLEET_BOTS = f"""
SELECT b.name, b.metaservice, b.ticket_type, b.state, b.state_name, b.enabled, b.replicas, h.host,
       bh.health, bh.reason AS health_reason, coalesce(bh.restarts_in_a_row, 0) AS restarts_in_a_row,
       p.heartbeat_age_s,
       (SELECT coalesce(jsonb_object_agg(r.reason, r.restarts), '{{}}') FROM watchdog_restart_totals r
        WHERE r.bot = b.name) AS restarts
FROM bots b
-- A bot no host's watchdog has run yet is still listed, on no host.
LEFT JOIN LATERAL unnest({_BOT_HOSTS}) AS h(host) ON true
LEFT JOIN bot_health bh ON bh.bot_name = b.name AND bh.host = h.host
LEFT JOIN LATERAL (SELECT extract(epoch FROM {LIVE_NOW} - max(bp.heartbeat_at))::float8 AS heartbeat_age_s
                   FROM bot_processes bp
                   WHERE bp.bot_name = b.name AND (h.host IS NULL OR bp.host = h.host) AND bp.stopped_at IS NULL) p ON true
ORDER BY b.metaservice, b.ticket_type, b.state, b.name, h.host
"""

CONSOLE_WATCHDOGS = f"""
SELECT name, host, pid, extract(epoch FROM {LIVE_NOW} - heartbeat_at)::float8 AS heartbeat_age_s,
       extract(epoch FROM {LIVE_NOW} - last_check_at)::float8 AS check_age_s, supervisor_error
FROM watchdogs ORDER BY host, name
"""

# The open tickets of some types by state, each counted once, by the first that holds of: held (a live lease,
# a bot's or a worker's), parked (waiting on an error ticket), due (its bot may take it now), waiting (for a
# ticket, a timer, a retry, its start). Only open tickets are read: the partial claim index.
CONSOLE_STATE_COUNTS = f"""
SELECT metaservice, ticket_type, state, count(*) AS open,
       count(*) FILTER (WHERE kind = 'held') AS held, count(*) FILTER (WHERE kind = 'parked') AS parked,
       count(*) FILTER (WHERE kind = 'due') AS due, count(*) FILTER (WHERE kind = 'waiting') AS waiting
FROM (SELECT t.metaservice, t.ticket_type, t.state,
             CASE WHEN t.lease_expires_at > {LIVE_NOW} THEN 'held'
                  WHEN t.waiting_for IS NOT NULL AND EXISTS (
                      SELECT 1 FROM tickets e WHERE e.id = t.waiting_for
                      AND e.metaservice = '{ERROR_METASERVICE}' AND e.ticket_type = '{ERROR_TYPE}') THEN 'parked'
                  WHEN t.waiting_for IS NULL AND t.due_at <= (SELECT botfleet_now()) THEN 'due'
                  ELSE 'waiting' END AS kind
      FROM tickets t
      JOIN unnest(%(metaservices)s::text[], %(ticket_types)s::text[]) AS k(metaservice, ticket_type)
        ON t.metaservice = k.metaservice AND t.ticket_type = k.ticket_type
      WHERE t.closed_at IS NULL) counted
GROUP BY metaservice, ticket_type, state
"""

# The health of each state's bot, the worst of its hosts' fresh verdicts (NULL: nobody judged it lately).
CONSOLE_STATE_HEALTH = f"""
SELECT b.metaservice, b.ticket_type, b.state, b.enabled,
       CASE WHEN count(bh.health) = 0 THEN NULL
            WHEN bool_and(bh.health = 'healthy') THEN 'healthy'
            ELSE min(bh.health) FILTER (WHERE bh.health <> 'healthy') END AS health
FROM bots b
LEFT JOIN bot_health bh ON bh.bot_name = b.name AND bh.at >= {LIVE_NOW} - %(stale_after_s)s * interval '1 second'
WHERE b.metaservice = ANY(%(metaservices)s) AND b.ticket_type = ANY(%(ticket_types)s)
GROUP BY b.metaservice, b.ticket_type, b.state, b.enabled
"""

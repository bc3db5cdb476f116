"""The duty of the built-in bot botfleet-webhook-1-deliver: POST each state change to its callback URLs.

The outbox rows are written by a trigger in the transaction of the change, so none is lost. Each run
takes the due rows (the oldest pending one per ticket and receiver: a ticket's changes arrive in order),
POSTs them side by side, each signed with HMAC-SHA256 of the exact body under its type's key, and
records each answer: 2xx delivered; 408, 429, 5xx or no answer tried again after a doubling backoff,
failed after `max_tries`; any other 4xx failed at once (the receiver refuses it), and so is a 3xx: a
redirect is never followed, as it could send the fleet's POST to an address webhooks.allow never allowed. A run never waits on a
receiver: it claims a batch with a lease (committed at once) and hands it to the duty's own threads
(bots/courier.py); the run after they are back records the answers, each in a statement of its own.
"""

import hashlib
import hmac
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from functools import partial

from bots.courier import Courier
from common.config.models import TicketType
from common.errors import BotfleetError
from common.store import sql

log = logging.getLogger(__name__)

PARALLEL_POSTS = 8  # deliveries of one batch, each to its own ticket, sent side by side
SIGNATURE_HEADER = "X-Botfleet-Signature"
RETRY_STATUSES = {408, 429}


def body_of(row) -> bytes:
    """The JSON POSTed for one state change: the bytes that are signed are the bytes sent."""
    return json.dumps({"ticket_id": row["ticket_id"], "event_id": row["event_id"], "from_state": row["from_state"],
                       "to_state": row["to_state"], "at": row["at"].isoformat()}, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError: a failed delivery


_OPENER = urllib.request.build_opener(_NoRedirects)


class WebhookDuty:
    def __init__(self, config, actor, wake=None):
        self.config = config
        self.settings = config.webhooks
        self.actor = actor
        # A POST waits at most a timeout to connect and one for the answer; then the loop writes it.
        self.lease_s = self.settings.timeout_s * 2 + config.hung_after_s
        self.courier = Courier("webhook", wake)

    def run(self, conn) -> float | None:
        """Record the last batch's answers, send the next, prune; seconds until the next is due (None: a
        batch is out, and wake() comes when it is back; or nothing pending)."""
        if self.courier.busy:
            return None
        self.courier.write(partial(self._record, conn))
        rows = conn.execute(sql.TAKE_WEBHOOKS, {"limit": PARALLEL_POSTS, "lease_s": self.lease_s}).fetchall()
        if rows:
            self.courier.send([partial(self._post_one, row) for row in rows])
        conn.execute(sql.PRUNE_WEBHOOKS, {"keep_delivered_s": self.settings.keep_delivered_s,
                                          "keep_failed_s": self.settings.keep_failed_s})
        if rows:
            return None
        return conn.execute(sql.NEXT_WEBHOOK_DUE).fetchone()["due_in_s"]

    def _record(self, conn, result):
        row, (error, final) = result
        if error is None:
            conn.execute(sql.WEBHOOK_DELIVERED, {"id": row["id"]})
            return
        marked = conn.execute(sql.WEBHOOK_FAILED_TRY, {
            "id": row["id"], "error": error, "final": final, "max_tries": self.settings.max_tries,
            "backoff_s": self.settings.retry_backoff_s, "max_backoff_s": self.settings.max_backoff_s,
        }).fetchone()
        if marked is None:
            return  # no longer pending: its lease ran out, and another try was recorded first
        log.log(logging.ERROR if marked["state"] == "failed" else logging.WARNING,
                "webhook %s of ticket %s to %s: %s (try %d of %d%s)", row["id"], row["ticket_id"], row["url"],
                error, row["attempts"], self.settings.max_tries, ", failed" if marked["state"] == "failed" else "")

    def _secret_env(self, row) -> str:
        try:
            return self.config.ticket_type(row["metaservice"], row["ticket_type"]).callback_secret_env
        except BotfleetError:  # a type no longer configured: its webhooks are signed with the default key
            return TicketType.callback_secret_env

    # -- on the courier's threads: no database here ------------------------------------------------
    def _post_one(self, row) -> list:
        return [(row, self._post(row))]

    def _post(self, row) -> tuple[str | None, bool]:
        """(None, _) when delivered; else why, and whether it is final (the receiver refused it)."""
        env = self._secret_env(row)
        secret = os.environ.get(env)
        if not secret:
            return f"no signing key: set the environment variable {env}", False
        body = body_of(row)
        request = urllib.request.Request(row["url"], data=body, method="POST", headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body),
            "X-Botfleet-Event-Id": str(row["event_id"]), "X-Botfleet-Delivery": str(row["id"]),
            "User-Agent": "botfleet-webhook"})
        try:
            with _OPENER.open(request, timeout=self.settings.timeout_s) as response:
                response.read(1024)
                return None, False
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                return f"answered {exc.code} {exc.reason} to {exc.headers.get('Location')}: redirects are not followed", True
            final = 400 <= exc.code < 500 and exc.code not in RETRY_STATUSES
            return f"answered {exc.code} {exc.reason}", final
        # Refused, timed out, unreachable, a URL urllib cannot use, an answer that is not HTTP.
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return f"no answer: {exc}", False

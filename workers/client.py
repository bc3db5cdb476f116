"""A worker's side of seed 002, over the fleet's HTTP API: ask for work, report progress, finish.

Standard library only, so a worker needs nothing of the fleet installed but this module:

    worker = WorkerClient("http://127.0.0.1:8080", token, name="gen-1", ticket_type="enotify/site")
    ticket = worker.next_ticket()            # None: nothing to do now
    worker.progress(ticket["id"], "GENERATION_START")   # True once per message; False: not recorded
    worker.finish(ticket["id"])              # or finish(id, to=4, payload={"error": "..."})

The worker is known by its name, not its address; each WorkerClient is one process of that name (its
session). Asking for more while holding a ticket abandons that ticket: finish before asking again.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

TIMEOUT_S = 10.0


class WorkerError(Exception):
    """The API refused a call: its HTTP status, error code and message (409 worker_busy, not_held, ...)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class WorkerClient:
    def __init__(self, base_url: str, token: str, *, name: str, ticket_type: str, session: str | None = None,
                 timeout_s: float = TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.token, self.name, self.ticket_type = token, name, ticket_type
        self.session = session or uuid.uuid4().hex
        self.timeout_s = timeout_s

    def next_ticket(self) -> dict | None:
        """The ticket to work on now (the seed's get_site_to_generate), or None when none is due."""
        query = urllib.parse.urlencode({"type": self.ticket_type})
        return self._post(f"/workers/{self._name()}/next?{query}", None)

    def progress(self, ticket_id: int, message: str) -> bool:
        """Report a progress message (the seed's update_generation_progress): True when recorded; False for a
        message its state does not list, a repeat, or a ticket this worker no longer holds."""
        return self._post(f"/workers/{self._name()}/tickets/{int(ticket_id)}/progress", {"message": message})["recorded"]

    def finish(self, ticket_id: int, to: int | None = None, payload: dict | None = None) -> dict:
        """The ticket takes its normal next state (or `to`), its payload merge-patched; the ticket as it is now."""
        body = {key: value for key, value in (("to", to), ("payload", payload)) if value is not None}
        return self._post(f"/workers/{self._name()}/tickets/{int(ticket_id)}/finish", body)

    def _name(self) -> str:
        return urllib.parse.quote(self.name, safe="")

    def _post(self, path: str, body):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method="POST", headers={
            "Authorization": f"Bearer {self.token}", "Worker-Session": self.session,
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read()) if response.status != 204 else None
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", exc.reason
            raise WorkerError(exc.code, code, message) from None

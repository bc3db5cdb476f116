"""Ids for the child tickets a handler creates, taken from the tickets' id sequence as it plans them: the handler
may store a child's id in its ticket's payload. A handler runs on a pool thread and the connection is the control
loop's, so the handler asks the loop (through the inbox) and waits for its answer. An id of a plan that is never
written (the handler failed, the step was retried) simply stays unused."""

import threading

from common.store import sql


class IdRequest:
    """One handler's wait for an id; answered by the control loop."""

    def __init__(self):
        self.answered = threading.Event()
        self.id = None
        self.error = None

    def answer(self, conn):
        """On the control loop. Never raises: a failure is the asking handler's (its step fails and is retried);
        a lost connection shows at the loop's next statement."""
        try:
            self.id = conn.execute(sql.NEXT_TICKET_ID).fetchone()["id"]
        except Exception as exc:  # noqa: BLE001 - handed to the handler that asked
            self.error = exc
        finally:
            self.answered.set()


class TicketIds:
    def __init__(self, inbox, wait_s: float):
        self.inbox = inbox
        self.wait_s = wait_s

    def next(self) -> int:
        """On a handler thread: a fresh ticket id, from the control loop."""
        request = IdRequest()
        self.inbox.put(request)
        if not request.answered.wait(self.wait_s):
            raise TimeoutError(f"the bot's loop gave no ticket id within {self.wait_s:g}s")
        if request.error is not None:
            raise RuntimeError(f"no ticket id for a new child ticket: {request.error}") from request.error
        return request.id

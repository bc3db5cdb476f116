"""Sends to other servers (SMTP, webhook receivers) on threads of a duty's own, never on the control loop.

The control loop heartbeats, and a server that accepts a connection and never answers must not make
the bot look hung; nor may a transaction stay open while it waits. So a duty's run() claims a batch
with a lease (a statement that commits at once), hands it to its Courier and returns. When the whole
batch is back the courier calls wake(), and the next run() writes each result in a short statement of
its own before it claims the next batch. Until then the duty claims nothing: no two batches overlap.

The threads are daemons: a stopping bot does not wait for a server. What they sent is then not marked,
and the batch's lease keeps it from going out again until the lease runs out.
"""

import threading


class Courier:
    def __init__(self, name: str, wake=None):
        self._name = name
        self._wake = wake or (lambda: None)
        self._lock = threading.Lock()
        self._left = 0  # jobs of the batch out that have not returned
        self._back: list = []  # per job of the batch: its results, or what it raised
        self._unwritten: list = []  # results back and not yet written

    @property
    def busy(self) -> bool:
        """A batch is out: what it sent is not known yet."""
        with self._lock:
            return self._left > 0

    def send(self, jobs):
        """Run each job (a callable giving a list of results) on a thread of its own, side by side; wake()
        once they have all returned."""
        if self.busy:
            raise RuntimeError("a batch is out: one at a time")
        self._back = [[] for _ in jobs]
        self._left = len(jobs)
        for index, job in enumerate(jobs):
            threading.Thread(target=self._run, args=(index, job), name=f"{self._name}-{index}", daemon=True).start()

    def _run(self, index, job):
        try:
            back = job()
        except BaseException as exc:  # a bug: write() raises it on the control loop, which stops the bot
            back = exc
        with self._lock:
            self._back[index] = back
            self._left -= 1
            last = self._left == 0
        if last:
            self._wake()

    def write(self, write_one):
        """write_one(result) for each result that came back, in order. Each is dropped only once written, so
        a connection lost midway leaves the rest for the next run; the batch's lease keeps them unsent."""
        if self.busy:
            return
        back, self._back = self._back, []
        for results in back:
            if isinstance(results, BaseException):
                raise RuntimeError("a send of this duty failed unexpectedly") from results
            self._unwritten.extend(results)
        while self._unwritten:
            write_one(self._unwritten[0])
            del self._unwritten[0]

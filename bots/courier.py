"""Sends to other servers (SMTP, webhook receivers) on threads of a duty's own, never on the control loop.

The control loop heartbeats, and a server that accepts a connection and never answers must not make
the bot look hung; nor may a transaction stay open while it waits. So a duty's run() claims a batch
with a lease (a statement that commits at once), hands it to its Courier and returns. When the whole
batch is back the courier calls wake(), and the next run() writes each result in a short statement of
its own before it claims the next batch. Until then the duty claims nothing: no two batches overlap.
"""

from concurrent.futures import ThreadPoolExecutor


class Courier:
    def __init__(self, name: str, threads: int, wake=None):
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._wake = wake or (lambda: None)
        self._out: list = []  # the futures of the batch out, each giving a list of results
        self._unwritten: list = []  # results back and not yet written

    @property
    def busy(self) -> bool:
        """A batch is out: what it sent is not known yet."""
        return any(not future.done() for future in self._out)

    def send(self, jobs):
        """Run each job (a callable giving a list of results; it must not raise) on the threads, side by
        side; wake() once they have all returned."""
        assert not self.busy, "one batch at a time"
        out = [self._threads.submit(job) for job in jobs]
        self._out = out

        def returned(_):
            if all(future.done() for future in out):  # several may see it: wake() is idempotent
                self._wake()
        for future in out:
            future.add_done_callback(returned)

    def write(self, write_one):
        """write_one(result) for each result that came back, in order. Each is dropped only once written, so
        a connection lost midway leaves the rest for the next run; the batch's lease keeps them unsent."""
        if self.busy:
            return
        for future in self._out:
            self._unwritten.extend(future.result())
        self._out = []
        while self._unwritten:
            write_one(self._unwritten[0])
            del self._unwritten[0]

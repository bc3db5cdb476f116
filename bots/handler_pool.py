"""The bot's handler threads: each run of a handler (or of a type's ticket_timeout, or of an on_<kind> message
handler) is known by its own number, and timed against handler_timeout on the monotonic clock.

A run that overruns is given up: the loop writes its overrun step (the handler's failure) at once and
its thread is left to finish; whatever it returns later is dropped, and logged, because a newer run of the
same ticket (its retry) may already be running or written. Counting runs, not tickets, keeps a retry that
also hangs from hiding a second stuck thread.
"""

import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger("botfleet.bot")


@dataclass
class Run:
    number: int
    ticket_id: int | None  # None: not a ticket's run (a message's handler)
    overrun: object  # called with the reason when the run overruns: what the loop writes instead
    what: str  # for the log: "the handler of ticket 12"
    submitted_mono: float
    started_mono: float | None = None  # set by its thread as the work starts (it may wait for a thread first)


@dataclass(frozen=True)
class Finished:
    """A run's result, from its thread to the loop: what the work returned, or `failed` with the exception."""

    run_number: int
    result: object = None
    failed: BaseException | None = None


@dataclass
class HandlerPool:
    threads: int
    timeout_s: float
    inbox: object
    name: str
    active: dict = field(default_factory=dict)  # run number -> Run, for runs not finished nor given up
    given_up: dict = field(default_factory=dict)  # run number -> Run, overrun and still on their threads

    def __post_init__(self):
        self._numbers = itertools.count(1)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)

    def submit(self, work, *, ticket_id=None, overrun=None, what="a handler") -> Run:
        run = Run(next(self._numbers), ticket_id, overrun, what, time.monotonic())
        self.active[run.number] = run
        self._executor.submit(self._run, run, work)
        return run

    def _run(self, run, work):
        run.started_mono = time.monotonic()
        try:
            self.inbox.put(Finished(run.number, result=work()))
        except BaseException as exc:  # noqa: BLE001 - the loop decides; this thread must always report
            self.inbox.put(Finished(run.number, failed=exc))

    def accept(self, finished: Finished) -> Run | None:
        """The run a result belongs to, if it still counts; None for a late result of a given-up run."""
        run = self.active.pop(finished.run_number, None)
        if run is not None:
            return run
        late = self.given_up.pop(finished.run_number, None)
        if late is not None:
            log.warning("%s (run %d) returned %.1fs after it was given up for overrunning handler_timeout "
                        "(%gs); its result is dropped", late.what, late.number,
                        time.monotonic() - (late.started_mono or time.monotonic()), self.timeout_s)
        return None

    def time_out(self, now_mono) -> list:
        """Give up the runs that overran handler_timeout: [(run, what its overrun returns)]."""
        overrun = []
        for number, run in list(self.active.items()):
            if run.started_mono is None or now_mono - run.started_mono < self.timeout_s:
                continue
            del self.active[number]
            self.given_up[number] = run
            log.warning("%s (run %d) ran longer than handler_timeout (%gs): given up", run.what, number,
                        self.timeout_s)
            reason = f"the handler ran longer than handler_timeout ({self.timeout_s:g}s)"
            overrun.append((run, run.overrun(reason, now_mono - run.started_mono) if run.overrun else None))
        return overrun

    def next_timeout_mono(self) -> float | None:
        """When the first active run overruns. A run still waiting for a thread counts from its submission:
        the loop then looks again, without a wake-up from the thread that starts it."""
        now_mono = time.monotonic()
        deadlines = []
        for run in list(self.active.values()):
            if run.started_mono is not None:
                deadlines.append(run.started_mono + self.timeout_s)
            elif run.submitted_mono + self.timeout_s > now_mono:  # once past, its start rings the inbox first
                deadlines.append(run.submitted_mono + self.timeout_s)
        return min(deadlines, default=None)

    def stuck(self) -> int:
        """Threads still held by given-up runs: they serve nobody until their handler returns."""
        return len(self.given_up)

    def all_stuck(self) -> bool:
        return len(self.given_up) >= self.threads

    def shutdown(self):
        self._executor.shutdown(wait=False, cancel_futures=True)

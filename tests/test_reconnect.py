"""Reconnect backoff: doubling up to a cap, with jitter so that a fleet does not reconnect in lockstep."""

import random

from common.store.reconnect import Backoff


def test_delays_double_up_to_the_cap_and_stay_within_each_step():
    backoff = Backoff(min_s=0.1, max_s=1.0, rng=random.Random(1))
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for step_s in steps:
        assert step_s / 2 <= backoff.next_s() <= step_s
    backoff.reset()
    assert backoff.next_s() <= 0.1


def test_processes_that_lost_the_database_together_wait_different_times():
    first_delays = {round(Backoff(rng=random.Random(seed)).next_s(), 6) for seed in range(20)}
    assert len(first_delays) == 20

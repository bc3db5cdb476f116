"""Durations in config files: the accepted forms and a clear error for anything else."""

import pytest

from common.config.durations import parse_duration_s


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2592000), ("250ms", 0.25), ("1.5s", 1.5), (5, 5.0),
])
def test_parses(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5 weeks", "-3s", True, -1, "1h30m"])
def test_refuses(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(text)

"""The rules of a status model as pure decisions, table-tested: what may be set given what is set, and
when an instance is finished."""

import pytest

from common.config.status_models import ModelStatus, StatusModel
from common.status_models.rules import COMPLETED, STOPPED, finish_reason, refusal, requirement

# A review: RECEIVED first; optional checks after it; APPROVED (mandatory) or a STOP after it or the checks.
TYPES = {"RECEIVED": "MANDATORY", "SPELLING": "OPTIONAL", "LEGAL": "OPTIONAL", "APPROVED": "MANDATORY",
         "REJECTED": "STOP", "NOTE": "OPTIONAL", "SIGNED": "MANDATORY"}
FOLLOWS = {"RECEIVED": set(), "SPELLING": {"RECEIVED"}, "LEGAL": {"RECEIVED"},
           "APPROVED": {"RECEIVED", "SPELLING", "LEGAL"}, "REJECTED": {"RECEIVED", "SPELLING", "LEGAL"},
           "NOTE": set(), "SIGNED": {"SPELLING", "LEGAL"}}
MODEL = StatusModel("REVIEW", "", {name: ModelStatus(name, "", kind) for name, kind in TYPES.items()},
                    {name: frozenset(before) for name, before in FOLLOWS.items()})


@pytest.mark.parametrize(("done", "status", "finished", "verdict"), [
    ([], "RECEIVED", None, None),
    ([], "NOTE", None, None),  # no predecessors: any time
    ([], "APPROVED", None, "needs RECEIVED"),
    (["RECEIVED"], "APPROVED", None, None),  # optional predecessors are not needed beside a mandatory one
    (["RECEIVED"], "SIGNED", None, "needs one of LEGAL, SPELLING"),
    (["RECEIVED", "LEGAL"], "SIGNED", None, None),
    (["RECEIVED", "SIGNED", "LEGAL"], "SPELLING", None, "comes too late"),  # SIGNED follows SPELLING
    (["RECEIVED"], "RECEIVED", None, "already set"),
    (["RECEIVED"], "SPELLING", "stopped", "is finished (stopped)"),
    (["RECEIVED"], "ARCHIVED", None, "not a status of 'REVIEW'"),
])
def test_what_may_be_set_given_what_is_set(done, status, finished, verdict):
    refused = refusal(MODEL, "T-1", done, status, finished)
    if verdict is None:
        assert refused is None
    else:
        assert verdict in refused.message and status in refused.message
        assert refused.http_status == (400 if status not in TYPES else 409)
        if status in TYPES:
            assert "T-1" in refused.message


@pytest.mark.parametrize(("done", "reason"), [
    ([], None),
    (["RECEIVED", "APPROVED"], None),  # SIGNED is mandatory too
    (["RECEIVED", "APPROVED", "LEGAL", "SIGNED"], COMPLETED),
    (["RECEIVED", "REJECTED"], STOPPED),
])
def test_an_instance_is_finished_by_a_stop_status_or_by_every_mandatory_one(done, reason):
    assert finish_reason(MODEL, done) == reason


def test_when_a_status_may_be_set_in_words():
    assert [requirement(MODEL, name) for name in ("RECEIVED", "APPROVED", "SIGNED")] == [
        "first", "after RECEIVED", "after one of LEGAL, SPELLING"]

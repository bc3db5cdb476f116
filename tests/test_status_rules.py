"""The rules of a status model as pure decisions, table-tested: what may be set given what is set, and
when an instance is finished."""

import pytest

from common.config.status_models import ModelStatus, StatusModel
from common.status_models.reach import unreachable
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


def _model(types: str, workflow: list) -> StatusModel:
    """A model from "NAME:TYPE ..." (M, O or S) and workflow rows [status, statuses that follow it...]."""
    kinds = {"M": "MANDATORY", "O": "OPTIONAL", "S": "STOP"}
    statuses = dict(pair.split(":") for pair in types.split())
    follows = {name: set() for name in statuses}
    for current, *following in workflow:
        for name in following:
            follows[name].add(current)
    return StatusModel("M", "", {name: ModelStatus(name, "", kinds[kind]) for name, kind in statuses.items()},
                       {name: frozenset(before) for name, before in follows.items()})


@pytest.mark.parametrize(("types", "workflow", "dead"), [
    # An optional status after the last mandatory one: the instance has completed by then.
    ("RUN:M FINISHED:M ARCHIVED:O", [["RUN", "FINISHED"], ["FINISHED", "ARCHIVED"]],
     {"ARCHIVED": "it needs FINISHED, RUN set first, every MANDATORY status, which finishes the instance"}),
    # After a STOP status, and what needs that, and what follows only dead statuses.
    ("GO:M HALT:S RESUME:M DONE:M", [["GO", "HALT"], ["HALT", "RESUME"], ["RESUME", "DONE"]],
     {"RESUME": "it needs the STOP status HALT set first, which finishes the instance",
      "DONE": "it needs RESUME set first, which can never be set"}),
    ("A:M B:M X:O Y:O Z:O", [["A", "B"], ["B", "X", "Y"], ["X", "Z"], ["Y", "Z"]],
     {"X": "it needs A, B set first, every MANDATORY status, which finishes the instance",
      "Y": "it needs A, B set first, every MANDATORY status, which finishes the instance",
      "Z": "it follows only X, Y, which can never be set"}),
    # Live: one of two ways is enough; an optional status before the last mandatory one; one that follows
    # nothing; an optional status after a mandatory one that another, unordered, mandatory one may not follow.
    ("X:O Y:O BUILT:M DONE:M", [["X", "BUILT"], ["Y", "BUILT"], ["BUILT", "DONE"]], {}),
    ("RUN:M CHECK:O DONE:M NOTE:O", [["RUN", "CHECK", "DONE"], ["CHECK", "DONE"]], {}),
    ("M1:M M2:M AFTER1:O", [["M1", "AFTER1"]], {}),
    ("GO:M HALT:S DONE:M", [["GO", "HALT", "DONE"]], {}),
    # A STOP status after the only mandatory one cannot stop anything.
    ("GO:M HALT:S", [["GO", "HALT"]], {"HALT": "it needs GO set first, every MANDATORY status, which finishes the "
                                               "instance"}),
])
def test_statuses_a_model_can_never_set(types, workflow, dead):
    assert unreachable(_model(types, workflow)) == dead


def test_the_shipped_models_can_set_every_status():
    from common.config.status_models import load_status_models
    from tests.test_status_models import SHIPPED

    assert {name: unreachable(model) for name, model in load_status_models(SHIPPED.parent).items()} == {
        "2-POINT LINE TASK": {}, "DOCUMENT REVIEW": {}}

"""Attended transfers through Dial(Local/...) chains (issue 15, older dialplans).

The fixture was recorded on the testbed (`python -m tests.scenarios.driver --write
transfer/attended_local_chain`, dialplan contexts `to-seat-legacy`, `legacy-agent`,
`atxfer-legacy`, `seats-talk` in asterisk-sample/extensions.conf).
"""

from __future__ import annotations

import json
from pathlib import Path

from cti.calls import CallEnded, CallTracker
from cti.replay import _from_json, replay_file

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ami" / "transfer"
CHAIN = FIXTURE / "attended_local_chain.jsonl"


def _events() -> list[str]:
    return [json.loads(line).get("Event", "") for line in CHAIN.read_text().splitlines()]


def test_fixture_really_has_local_chains_optimised_away() -> None:
    events = _events()
    # three Local pairs optimised out of the media path, and one attended transfer
    assert events.count("LocalOptimizationBegin") == 3
    assert events.count("LocalOptimizationEnd") == 3
    assert events.count("LocalBridge") >= 6
    assert events.count("AttendedTransfer") == 1


def test_attended_transfer_through_local_chain_is_reported() -> None:
    (summary,) = replay_file(CHAIN)
    assert summary["transfers"] == [
        {"type": "attended", "by": "1001", "to": "1002", "at": summary["transfers"][0]["at"]}
    ]
    assert summary["answered_by"] == "1001"
    assert summary["outcome"] == "answered"
    # the optimised pairs' HangupRequest/Hangup are not the callee hanging up
    assert summary["hangup_by"] == "caller"


def test_optimised_halves_leave_no_state_behind() -> None:
    tracker = CallTracker()
    ended = []
    for line in CHAIN.read_text().splitlines():
        ev = _from_json(json.loads(line), "main")
        if ev is not None:
            ended += [n for n in tracker.handle(ev) if isinstance(n, CallEnded)]
    assert len(ended) == 1
    assert tracker.active_calls() == []
    assert tracker._optimizing == {}
    assert tracker.anomalies["handler_error"] == 0


def test_a_failed_optimisation_still_ends_the_party() -> None:
    """Without the swap (the Source never entered the `;1` half's bridge), a hang-up of
    the halves is a real hang-up of that party."""
    lines = [json.loads(x) for x in CHAIN.read_text().splitlines()]
    # drop the BridgeEnter that swaps each Source in: the optimisation "did not happen"
    sources = {m["SourceUniqueid"] for m in lines if m.get("Event") == "LocalOptimizationBegin"}
    kept = [
        m
        for m in lines
        if not (m.get("Event") in {"BridgeEnter", "BridgeLeave"} and m.get("Uniqueid") in sources)
    ]
    tracker = CallTracker()
    out = []
    for m in kept:
        ev = _from_json(m, "main")
        if ev is not None:
            out += [n.summary for n in tracker.handle(ev) if isinstance(n, CallEnded)]
    assert len(out) == 1
    assert out[0].hangup_by == "callee"


def test_a_chain_collapsing_the_other_way_is_still_the_caller_hanging_up() -> None:
    """Live, a Local pair's Source is swapped into the bridge of the half it is *not*
    bridged with — sometimes `;1`'s, sometimes `;2`'s (run to run on the same dialplan).
    Recorded once each way; both are the caller hanging up after the transfer."""
    reversed_chain = FIXTURE / "attended_local_chain_reversed.jsonl"
    tracker = CallTracker()
    ended = []
    for line in reversed_chain.read_text().splitlines():
        ev = _from_json(json.loads(line), "main")
        if ev is not None:
            ended += [n for n in tracker.handle(ev) if isinstance(n, CallEnded)]
    (call,) = ended
    assert call.summary.hangup_by == "caller"
    assert call.summary.transfers[0].to == "1002"
    # nothing of the chain was taken for a party leaving or left behind
    assert tracker.active_calls() == []

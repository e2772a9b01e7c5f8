"""The lease (issue 15): configurable, shorter by default, validated, rounded up on the wire."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cti.adapters.ami_actions import actions
from cti.core.messages import RenewLease, ReturnToHold
from cti.dialplan.contract import CONTEXT_HOLD, LEASE_VARIABLE, TAKEN_VARIABLE
from cti.settings import AmiSettings, load_settings
from tests.conftest import PROJECT

NODE = {"name": "main", "host": "127.0.0.1", "username": "cti", "secret": "x"}


def test_lease_defaults_and_sample() -> None:
    ami = AmiSettings.model_validate({"nodes": [NODE]})
    assert (ami.lease_s, ami.lease_renew_s) == (5.0, 1.0)
    sample = load_settings(PROJECT / "config" / "cti.yaml", env={}).ami
    assert sample.lease_s - sample.lease_renew_s >= 3  # stall tolerance documented


def test_lease_must_outlive_two_renewals() -> None:
    with pytest.raises(ValidationError, match="at least twice lease_renew_s"):
        AmiSettings.model_validate({"nodes": [NODE], "lease_s": 3, "lease_renew_s": 2})
    with pytest.raises(ValidationError, match="lease_s"):
        AmiSettings.model_validate({"nodes": [NODE], "lease_s": 1})


def test_lease_value_is_rounded_up() -> None:
    out = actions(RenewLease(node="main", until=1700000000.2))
    assert out == [{"Action": "Setvar", "Variable": LEASE_VARIABLE, "Value": "1700000001"}]


def test_a_call_sent_back_to_hold_is_marked_taken_again() -> None:
    # Seen in CI: the freeze cut the link with the call's MarkTaken in flight; each take-back
    # from the fallback queue met a holding loop without CTI_TAKEN, which sent it straight
    # back to the fallback: 1,058 take-backs in 10 s, until the caller hung up.
    chan = "Local/12315@cti-entry-00000001;2"
    out = actions(ReturnToHold(node="main", channel=chan, call_id="c1", reason="fallback"))
    assert out == [
        {"Action": "Setvar", "Channel": chan, "Variable": TAKEN_VARIABLE, "Value": "1"},
        {
            "Action": "Redirect",
            "Channel": chan,
            "Context": CONTEXT_HOLD,
            "Exten": "s",
            "Priority": "1",
        },
    ]

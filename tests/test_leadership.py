"""The lease discipline on the leader's own clock (cti/core/leadership.py), pure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cti.core.leadership import Leadership, LeaseTerms, Role
from cti.settings import HaSettings, Settings

TERMS = LeaseTerms(lease_s=3.0, renew_s=0.5, margin_s=0.5)
NODE = {"name": "main", "host": "127.0.0.1", "username": "cti", "secret": "x"}


def test_without_ha_the_daemon_always_acts_and_writes_unfenced() -> None:
    solo = Leadership("a", None)
    assert solo.role is Role.SOLO
    assert solo.acting(0.0)
    assert solo.acting(1e12)
    assert solo.write_epoch(5.0) == 0


def test_a_standby_does_not_act_and_its_writes_carry_no_epoch() -> None:
    s = Leadership("b", TERMS)
    assert not s.acting(0.0)
    assert s.write_epoch(0.0) == -1
    s.seen("a", 7)
    assert s.status() == {
        "node": "b",
        "role": "standby",
        "epoch": None,
        "leader": "a",
        "leader_epoch": 7,
    }


def test_the_leader_acts_until_the_lease_minus_the_margin_from_the_send() -> None:
    lead = Leadership("a", TERMS)
    lead.acquired(4, sent=100.0)
    assert lead.acting(100.0)
    assert lead.write_epoch(102.0) == 4
    # the database stamped the expiry at or after 100.0 + 3; the leader stops at 102.5
    assert lead.acting(102.49)
    assert not lead.acting(102.5)
    assert lead.write_epoch(102.5) == -1
    assert lead.expired(102.5)


def test_a_renewal_extends_from_its_send_and_an_older_one_never_shortens() -> None:
    lead = Leadership("a", TERMS)
    lead.acquired(1, sent=0.0)
    lead.renewed(1.0)
    assert lead.acting(3.4)
    lead.renewed(0.5)  # a late answer of an earlier renewal
    assert lead.acting(3.4)
    assert not lead.acting(3.5)


def test_a_resumed_leader_finds_its_lease_over_whatever_runs_first() -> None:
    lead = Leadership("a", TERMS)
    lead.acquired(2, sent=10.0)
    # SIGSTOP at 10.2, SIGCONT at 30: before any task runs, acting() is already false
    assert not lead.acting(30.0)
    step = lead.step_down("lease_expired_locally")
    assert step is not None
    assert (step.epoch, step.reason) == (2, "lease_expired_locally")
    assert lead.role is Role.STEPPED_DOWN
    assert lead.step_down("again") is None  # once
    lead.acquired(3, sent=31.0)  # never leader again in this process
    assert not lead.acting(31.0)


def test_ha_settings_margins_and_postgresql_only() -> None:
    with pytest.raises(ValidationError, match="twice renew_s"):
        HaSettings(enabled=True, lease_s=1.0, renew_s=0.5, margin_s=0.5)
    with pytest.raises(ValidationError, match="below lease_s"):
        HaSettings(enabled=True, idle_in_transaction_s=3.0)
    with pytest.raises(ValidationError, match=r"ha\.enabled needs database\.url on PostgreSQL"):
        Settings.model_validate(
            {
                "ami": {"nodes": [NODE]},
                "database": {"url": "sqlite+aiosqlite:////tmp/x.db"},
                "ha": {"enabled": True},
            }
        )
    ok = Settings.model_validate(
        {
            "ami": {"nodes": [NODE]},
            "database": {"url": "postgresql+asyncpg://u:p@127.0.0.1/db"},
            "ha": {"enabled": True, "node_id": "cti-a"},
        }
    )
    assert ok.ha.node() == "cti-a"
    assert ":" in HaSettings().node()  # host:pid by default

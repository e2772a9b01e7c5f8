"""A transit node (ami.nodes[].transit, a county platform): its legs of a call carried over
the trunk to the city are not stored, ticketed or published as calls (the city's leg is
the call); the same events on an ordinary node are a stored call."""

from __future__ import annotations

from typing import Any

import structlog
import structlog.testing

from cti.core import Core, Publish, StoreCall
from cti.events import parse_event
from tests.routing.plans import make_plan


def county_leg(c: Core, node: str) -> list[Any]:
    def ev(name: str, t: float, uid: str, channel: str, **h: str) -> Any:
        base = {
            "Event": name,
            "Timestamp": str(t),
            "Channel": channel,
            "Uniqueid": uid,
            "Linkedid": "county1-100.1",
            "CallerIDNum": "13900139000",
            "CallerIDName": "张三",
            "Exten": "12345",
            "Context": "county-to-city",
        }
        return parse_event(node, {**base, **h}, 0.0)

    caller, trunk = "PJSIP/county-carrier-00000001", "PJSIP/city-00000002"
    out: list[Any] = []
    out += c.handle(ev("Newchannel", 100.0, "county1-100.1", caller))
    out += c.handle(ev("Newchannel", 100.1, "county1-100.2", trunk))
    for uid, name in (("county1-100.2", trunk), ("county1-100.1", caller)):
        out += c.handle(ev("Hangup", 110.0, uid, name, Cause="16"))
    return out


def test_a_transit_nodes_call_is_not_stored_nor_published() -> None:
    c = Core(make_plan(), log=structlog.get_logger("test"), transit_nodes=frozenset({"county1"}))
    out = county_leg(c, "county1")
    assert not [e for e in out if isinstance(e, StoreCall)]
    assert not [e for e in out if isinstance(e, Publish) and e.topic == "calls/events"]
    assert c.counts["transit_calls_ended"] == 1


def test_the_same_call_on_an_ordinary_node_is_stored() -> None:
    c = Core(make_plan(), log=structlog.get_logger("test"), transit_nodes=frozenset({"county1"}))
    out = county_leg(c, "main")
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    assert stored.summary.caller == "13900139000"
    assert c.counts["transit_calls_ended"] == 0


def test_a_county_call_the_trunk_never_carried_is_a_warning_not_a_record() -> None:
    """The county trunk down (or the city's Asterisk): the county's Dial over the trunk
    never answers, the caller hangs up or is hung up. The city has no trace of that caller,
    so the daemon connected to the county node says so (docs/deployment.md, failures)."""
    c = Core(make_plan(), log=structlog.get_logger("test"), transit_nodes=frozenset({"county1"}))
    with structlog.testing.capture_logs() as logs:
        out = county_leg(c, "county1")
    assert not [e for e in out if isinstance(e, StoreCall)]
    [warning] = [r for r in logs if r["event"] == "transit_call_not_carried"]
    assert (warning["log_level"], warning["node"], warning["call_id"]) == (
        "warning",
        "county1",
        "county1-100.1",
    )
    assert c.counts["transit_calls_ended"] == 1

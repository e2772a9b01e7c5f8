"""The tracker's bounded table (issue 16 item 4): a peer reporting channels it never hangs
up cannot grow the daemon without limit, and calls already tracked keep working."""

from __future__ import annotations

from typing import Any

from cti.calls import CallEnded, CallTracker
from cti.events import AmiConnected, parse_event


class _Log:
    """A logger that keeps what it was told (the tracker takes one as a parameter)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **kw: Any) -> None:
            self.records.append((level, event, kw))

        return log

    def of(self, event: str) -> list[tuple[str, dict[str, Any]]]:
        return [(lvl, kw) for lvl, ev, kw in self.records if ev == event]


def ev(name: str, t: float, node: str = "main", /, **h: str) -> Any:
    return parse_event(node, {"Event": name, "Timestamp": str(t), **h}, 0.0)


def newchannel(uid: str, linkedid: str, t: float = 100.0, node: str = "main") -> Any:
    return ev("Newchannel", t, node, Channel=f"PJSIP/trunk-{uid}", Uniqueid=uid, Linkedid=linkedid)


def hangup(uid: str, linkedid: str, t: float = 200.0, node: str = "main") -> Any:
    return ev(
        "Hangup", t, node, Channel=f"PJSIP/trunk-{uid}", Uniqueid=uid, Linkedid=linkedid, Cause="16"
    )


def test_new_calls_past_the_cap_are_refused_counted_and_logged_once() -> None:
    log = _Log()
    t = CallTracker(logger=log, max_channels=100)
    for i in range(100):
        t.handle(newchannel(f"1.{i}", f"1.{i}"))
    assert t.channel_count("main") == 100
    assert t.anomalies["channel_refused_table_full"] == 0
    for i in range(1000):  # a flood: all in the same second
        t.handle(newchannel(f"2.{i}", f"2.{i}", 100.5))
    assert t.channel_count("main") == 100
    assert t.call_count() == 100
    assert t.anomalies["channel_refused_table_full"] == 1000
    # loud, but one line for the flood, not a thousand
    [(level, facts)] = log.of("call_tracker_full")
    assert level == "error"
    assert (facts["node"], facts["max_channels"], facts["refused"]) == ("main", 100, 1)
    # ten seconds on: one more line, with the count since the last one
    t.handle(newchannel("3.0", "3.0", 111.0))
    assert [f["refused"] for _lvl, f in log.of("call_tracker_full")] == [1, 1000]


def test_events_of_a_refused_channel_are_unknown_and_end_nothing() -> None:
    t = CallTracker(max_channels=100)
    for i in range(100):
        t.handle(newchannel(f"1.{i}", f"1.{i}"))
    t.handle(newchannel("9.9", "9.9"))
    # a later event of the refused channel does not adopt it either
    t.handle(ev("Newstate", 101.0, Channel="PJSIP/trunk-9.9", Uniqueid="9.9", Linkedid="9.9"))
    assert t.call("main", "9.9") is None
    assert t.handle(hangup("9.9", "9.9")) == []
    assert t.anomalies["channel_refused_table_full"] == 2
    assert t.channel_count() == 100


def test_a_tracked_call_may_add_legs_past_the_cap_but_not_without_bound() -> None:
    t = CallTracker(max_channels=100)
    for i in range(100):
        t.handle(newchannel(f"1.{i}", f"1.{i}"))
    # call 1.0 rings a seat: its leg is taken although the table is at the cap
    t.handle(newchannel("1.0b", "1.0"))
    assert t.channel_count("main") == 101
    assert t.anomalies["channel_refused_table_full"] == 0
    for i in range(100):  # but one call cannot grow for ever
        t.handle(newchannel(f"1.0-{i}", "1.0"))
    assert t.channel_count("main") == 125
    assert t.anomalies["channel_refused_table_full"] == 76


def test_room_comes_back_as_calls_end_and_nodes_are_bounded_apart() -> None:
    t = CallTracker(max_channels=100)
    for i in range(150):  # node "flood" is full...
        t.handle(newchannel(f"1.{i}", f"1.{i}", node="flood"))
    assert t.channel_count("flood") == 100
    # ...node "main" is not: one bad peer does not stop the others
    t.handle(newchannel("5.5", "5.5"))
    assert t.call("main", "5.5") is not None
    # a call of the flood ends: there is room for one new call there again
    [note] = t.handle(hangup("1.0", "1.0", node="flood"))
    assert isinstance(note, CallEnded)
    t.handle(newchannel("7.7", "7.7", node="flood"))
    assert t.call("flood", "7.7") is not None
    assert t.channel_count("flood") == 100


def test_a_resync_adopts_no_more_than_the_cap() -> None:
    t = CallTracker(max_channels=100)
    t.handle(AmiConnected(node="main", time=1.0, version="x", reconnect=True))
    for i in range(300):
        t.handle(
            ev(
                "CoreShowChannel",
                10.0,
                Channel=f"PJSIP/trunk-{i}",
                Uniqueid=f"1.{i}",
                Linkedid=f"1.{i}",
                Duration="00:00:05",
            )
        )
    assert t.handle(ev("CoreShowChannelsComplete", 10.0)) == []
    assert t.call_count() == 100
    assert t.anomalies["channel_refused_table_full"] == 200


def test_a_page_of_active_calls_costs_its_size() -> None:
    t = CallTracker(max_channels=1000)
    for i in range(250):
        t.handle(newchannel(f"1.{i}", f"1.{i}"))
    pages = [t.active_page(o, 100) for o in (0, 100, 200, 300)]
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    ids = [c.call_id for p in pages for c in p]
    assert ids == [f"1.{i}" for i in range(250)]
    assert t.active_page(-5, 2)[0].call_id == "1.0"

"""TransferBook: matching 110's pushes to calls, and the feedback order — no I/O."""

from __future__ import annotations

from dataclasses import replace

from cti.dispatch110 import Transfer110, TransferBook, TransferMode
from cti.dispatch110.book import data_call_id
from cti.numberplan import number_key

T0 = 1_800_000_000.0


def push(tid: str = "J2026112700042", caller: str = "13800138000", **kw: object) -> Transfer110:
    values: dict[str, object] = {
        "transfer_id": tid,
        "mode": TransferMode.VOICE,
        "caller": caller,
        "caller_name": "张三",
        "category": "噪音扰民",
        "summary": "楼下装修噪音",
        "address": "幸福路1号",
        "called_at": T0 - 60,
        "operator_id": "110-0815",
    }
    values.update(kw)
    return Transfer110(**values)  # type: ignore[arg-type]


def events(feedback: list) -> list[str]:  # type: ignore[type-arg]
    return [f.event for f in feedback]


def test_push_then_call_with_its_id_then_answer_ticket_end() -> None:
    book = TransferBook()
    out = book.push(push(), T0)
    assert (out.result, out.matched_call, events(list(out.feedback))) == ("new", None, ["accepted"])
    assert book.call_arrived("c1", "13800138000", "J2026112700042", T0 + 5) == push()
    assert book.ticket_known("c1", "12345-20261127-000001", T0 + 6) == []  # not answered yet
    fb = book.call_answered("c1", "1001", T0 + 20)
    assert events(fb) == ["answered", "ticket"]
    assert fb[1].body["ticket"] == "12345-20261127-000001"
    fb = book.call_ended("c1", T0 + 80, outcome="answered", wait_s=15.0, talk_s=60.0)
    assert events(fb) == ["ended"]
    assert [f.seq for f in fb] == [4]
    assert fb[0].to_json()["event_id"] == "J2026112700042:4"
    status = book.status("J2026112700042")
    assert status is not None
    assert (status["status"], status["call_id"], status["seat"], status["ticket"]) == (
        "ended",
        "c1",
        "1001",
        "12345-20261127-000001",
    )


def test_call_before_push_matched_by_caller_within_the_window() -> None:
    book = TransferBook(match_window_s=300)
    assert book.call_arrived("c1", "13800138000", None, T0) is None
    out = book.push(push(caller="+86 138-0013-8000"), T0 + 30)
    assert out.matched_call == "c1"
    assert book.transfer_of("c1") is not None
    # too late for the window: no match, the call stays a plain 110-line call
    book2 = TransferBook(match_window_s=300)
    book2.call_arrived("c2", "13800138000", None, T0)
    assert book2.push(push(), T0 + 301).matched_call is None


def test_the_trunk_transfer_id_wins_over_the_caller() -> None:
    book = TransferBook()
    book.call_arrived("c1", "13800138000", "OTHER-1", T0)  # carries another transfer's id
    assert book.push(push(), T0 + 1).matched_call is None  # same caller, but not its id
    assert book.push(push("OTHER-1"), T0 + 2).matched_call == "c1"


def test_duplicate_and_conflicting_pushes() -> None:
    book = TransferBook()
    book.push(push(), T0)
    again = book.push(push(), T0 + 1)
    assert (again.result, again.feedback) == ("duplicate", ())
    changed = book.push(replace(push(), summary="另一件事"), T0 + 2)
    assert (changed.result, changed.feedback) == ("conflict", ())
    assert len(book) == 1


def test_data_transfer_reports_accepted_then_ticket() -> None:
    book = TransferBook()
    out = book.push(push(mode=TransferMode.DATA), T0)
    assert events(list(out.feedback)) == ["accepted"]
    fb = book.ticket_known(data_call_id("J2026112700042"), "12345-20261127-000002", T0 + 1)
    assert events(fb) == ["ticket"]
    # a data transfer never takes a call from the 110 line
    assert book.call_arrived("c9", "13800138000", None, T0 + 2) is None


def test_ticket_after_the_call_ended_is_still_reported() -> None:
    book = TransferBook()
    book.push(push(), T0)
    book.call_arrived("c1", "13800138000", None, T0 + 1)
    book.call_answered("c1", "1001", T0 + 5)
    assert events(book.call_ended("c1", T0 + 9, outcome="answered", wait_s=4, talk_s=4)) == [
        "ended"
    ]
    # the backend was down until after the end: the number still reaches 110, last
    assert events(book.ticket_known("c1", "N1", T0 + 30)) == ["ticket"]
    # ... unless the number came in before the end: then ticket precedes ended
    b2 = TransferBook()
    b2.push(push(), T0)
    b2.call_arrived("c1", "13800138000", None, T0 + 1)
    b2.ticket_known("c1", "N1", T0 + 2)
    assert events(b2.call_ended("c1", T0 + 3, outcome="abandoned", wait_s=2, talk_s=None)) == [
        "ticket",
        "ended",
    ]


def test_restore_keeps_duplicates_and_the_sequence() -> None:
    book = TransferBook()
    book.push(push(), T0)
    book.call_arrived("c1", "13800138000", None, T0 + 1)
    book.call_answered("c1", "1001", T0 + 2)
    saved = book.status("J2026112700042")
    assert saved is not None
    after = TransferBook()
    after.restore([saved])
    assert after.push(push(), T0 + 3).result == "duplicate"
    fb = after.call_ended("c1", T0 + 9, outcome="answered", wait_s=1, talk_s=7)
    assert [(f.event, f.seq) for f in fb] == [("ended", 3)]


def test_caller_numbers_compare_as_one_form() -> None:
    assert number_key("+86 138 0013 8000") == "13800138000"
    assert number_key("008613800138000") == "13800138000"
    assert number_key("8613800138000") == "13800138000"
    assert number_key("02988880000") == "02988880000"  # a landline keeps its area code


def test_forget_undoes_a_push_that_was_not_stored() -> None:
    book = TransferBook()
    book.call_arrived("c1", "13800138000", None, T0)
    assert book.push(push(), T0 + 1).matched_call == "c1"
    book.forget("J2026112700042")
    assert book.status("J2026112700042") is None
    assert book.transfer_of("c1") is None
    again = book.push(push(), T0 + 2)  # 110 pushes again: new, and finds its call again
    assert (again.result, again.matched_call) == ("new", "c1")


def test_sent_back_to_110_is_reported_before_the_end() -> None:
    book = TransferBook()
    book.push(push(), T0)
    book.call_arrived("c1", "13800138000", None, T0 + 1)
    book.call_answered("c1", "1001", T0 + 2)
    fb = book.call_escalated("c1", "110", "threeway", T0 + 5)
    assert [(f.event, f.body["to"], f.body["mode"]) for f in fb] == [
        ("transferred_back", "110", "threeway")
    ]
    assert events(book.call_escalated("c1", "120", "blind", T0 + 6)) == ["escalated"]
    assert events(book.call_ended("c1", T0 + 9, outcome="answered", wait_s=1, talk_s=7)) == [
        "ended"
    ]

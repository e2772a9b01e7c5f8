"""The core's 110 path: pushes matched to calls, pops with 110's data, feedback in order,
data transfers opening tickets — without Asterisk (the real path:
tests/real/test_dispatch110_real.py)."""

from __future__ import annotations

from cti.core import (
    Core,
    Effect,
    Pop,
    Reply110,
    Report110,
    StoreCall,
    StoreTicketOp,
    TicketNumberKnown,
    Transfer110Pushed,
)
from cti.dispatch110 import Transfer110, TransferMode
from tests.test_core import HELD, answer, chan, cmd, core, ev, hold

T0 = 1_800_000_000.0
LINE110 = "12345110"


def transfer(tid: str = "J42", mode: TransferMode = TransferMode.VOICE) -> Transfer110:
    return Transfer110(
        transfer_id=tid,
        mode=mode,
        caller="13800138000",
        caller_name="张三",
        category="噪音扰民",
        summary="楼下装修噪音",
        address="幸福路1号",
        called_at=T0 - 60,
        operator_id="110-0815",
    )


def call_110(c: Core, call: str, t: float, *, transfer_id: str | None = None) -> list[Effect]:
    first = HELD.replace(";2", ";1")  # the Local pair's other half
    c.handle(ev("Newchannel", t, **chan(first, call, call, Exten=LINE110)))
    c.handle(ev("Newchannel", t, **chan(HELD, f"{call}.2", call, Exten=LINE110)))
    c.handle(ev("VarSet", t, **chan(HELD, f"{call}.2", call, Variable="__CTI_LINE", Value=LINE110)))
    if transfer_id is not None:
        c.handle(
            ev(
                "VarSet",
                t,
                **chan(HELD, f"{call}.2", call, Variable="__CTI_TRANSFER_ID", Value=transfer_id),
            )
        )
    return hold(c, call, t + 0.1)


def push(c: Core, t: float, tr: Transfer110 | None = None) -> list[Effect]:
    return c.handle(Transfer110Pushed(transfer=tr or transfer(), at=t, request_id="r1"))


def feedback(out: list[Effect]) -> list[str]:
    return [e.feedback.event for e in out if isinstance(e, Report110)]


def test_push_then_call_pops_110_data_and_reports_in_order() -> None:
    c = core(wrapup_s=0)
    out = push(c, T0)
    [reply] = [e for e in out if isinstance(e, Reply110)]
    assert (reply.result, reply.request_id, reply.status["status"]) == ("new", "r1", "accepted")
    assert feedback(out) == ["accepted"]
    out = call_110(c, "c1", T0 + 5, transfer_id="J42")
    [draft] = [e.op for e in out if isinstance(e, StoreTicketOp)]
    assert draft.payload["origin"] == "dispatch110"
    assert draft.payload["external_ref"] == "J42"
    assert draft.payload["content"] == "【110转办 噪音扰民】楼下装修噪音"
    assert draft.payload["address"] == "幸福路1号"
    out = cmd(c, "1002", b'{"cmd":"login","ready":true}', T0 + 6)
    [offer] = [e for e in out if isinstance(e, Pop)]
    assert offer.call["dispatch110"]["transfer_id"] == "J42"
    assert offer.call["dispatch110"]["summary"] == "楼下装修噪音"
    out = c.handle(TicketNumberKnown(call_id="main:c1", number="N1", at=T0 + 6.5))
    assert feedback(out) == []  # not answered yet: "ticket" waits for "answered"
    out = answer(c, "c1", "1002", T0 + 7)
    assert feedback(out) == ["answered", "ticket"]
    first = HELD.replace(";2", ";1")
    out = c.handle(ev("HangupRequest", T0 + 30, **chan(first, "c1", "c1", Cause="16")))
    for uid, name in (("c1", first), ("c1.2", HELD), ("c1.1002", "PJSIP/1002-00000004")):
        out += c.handle(ev("Hangup", T0 + 30, **chan(name, uid, "c1", Cause="16")))
    assert feedback(out) == ["ended"]
    [ended] = [e.feedback for e in out if isinstance(e, Report110)]
    assert ended.body["outcome"] == "answered"
    assert (ended.body["seat"], ended.body["ticket"], ended.seq) == ("1002", "N1", 4)
    [stored] = [e for e in out if isinstance(e, StoreCall)]
    assert stored.ticket_ops[0].payload["external_ref"] == "J42"


def test_call_before_push_gets_an_update_pop_and_catches_up_on_feedback() -> None:
    c = core(wrapup_s=0)
    call_110(c, "c1", T0)  # no transfer id on the trunk: matched by caller later
    cmd(c, "1002", b'{"cmd":"login","ready":true}', T0 + 1)
    answer(c, "c1", "1002", T0 + 2)
    c.handle(TicketNumberKnown(call_id="main:c1", number="N1", at=T0 + 2.5))
    out = push(c, T0 + 10)
    [reply] = [e for e in out if isinstance(e, Reply110)]
    assert reply.status["call_id"] == "c1"
    [update] = [e for e in out if isinstance(e, Pop)]
    assert (update.kind, update.seat) == ("update", "1002")
    assert update.call["dispatch110"]["transfer_id"] == "J42"
    assert feedback(out) == ["accepted", "answered", "ticket"]


def test_data_transfer_opens_a_ticket_and_a_duplicate_does_nothing() -> None:
    c = core()
    out = push(c, T0, transfer(mode=TransferMode.DATA))
    [op] = [e.op for e in out if isinstance(e, StoreTicketOp)]
    assert (op.key, op.payload["origin"], op.payload["line"]) == (
        "110:J42:create",
        "dispatch110",
        LINE110,
    )
    again = push(c, T0 + 1, transfer(mode=TransferMode.DATA))
    assert [type(e).__name__ for e in again] == ["Reply110"]
    assert again[0].result == "duplicate"  # type: ignore[union-attr]
    out = c.handle(TicketNumberKnown(call_id="110:J42", number="N7", at=T0 + 2))
    assert feedback(out) == ["ticket"]
    assert c.transfers.status("J42")["ticket"] == "N7"  # type: ignore[index]

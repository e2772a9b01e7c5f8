"""Scenario drivers: make real calls on the testbed Asterisk and record their AMI trace.

Every scenario is an ``async def scenario(client, cid)`` that drives one situation with
Local channels (see asterisk-sample/extensions.conf: `inbound` holds the caller, the
test-only contexts at its end ring seats, transfer, reach external numbers). The client
keeps every message; :func:`run_scenario` keeps only the messages of the scenario's calls
(Linkedid starting with its unique prefix), so other traffic on the shared testbed never
leaks into a fixture.

Re-record a fixture::

    .venv/bin/python -m tests.scenarios.driver transfer/blind            # prints JSONL
    .venv/bin/python -m tests.scenarios.driver --all --write             # rewrites fixtures

Then update the expected summaries in tests/calls/expected.py (the test prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.scenarios.amiclient import TestAmiClient

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ami"

Scenario = Callable[[TestAmiClient, str], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}
CALLER = '"Test Caller" <13912345678>'


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def deco(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- helpers


def _is(event: str, **headers: str) -> Callable[[dict[str, Any]], bool]:
    def pred(m: dict[str, Any]) -> bool:
        return m.get("Event") == event and all(m.get(k) == v for k, v in headers.items())

    return pred


async def originate(
    c: TestAmiClient, cid: str, dnis: str, callerid: str = CALLER, context: str = "inbound"
) -> tuple[str, str]:
    """Start a caller: returns (customer ;1 channel, dialplan ;2 channel) once it is held."""
    await c.action(
        {
            "Action": "Originate",
            "Channel": f"Local/{dnis}@{context}",
            "Context": "customer",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "ChannelId": cid,
            "OtherChannelId": f"{cid}.2",
            "CallerID": callerid,
        }
    )
    try:
        one = await c.wait_for(_is("Newchannel", Uniqueid=cid), what="the caller's ;1")
    except TimeoutError as exc:
        # say what Asterisk did answer (an OriginateResponse failure, nothing at all, ...)
        seen = [
            {k: m.get(k) for k in ("Event", "Response", "Reason", "Channel", "Uniqueid")}
            for m in c.trace
            if m.get("Event") == "OriginateResponse" or cid in str(m.get("Uniqueid", ""))
        ]
        msg = f"{exc}; originate {cid} -> {seen[-6:]}; {len(c.trace)} messages in the trace"
        raise TimeoutError(msg) from None
    await c.wait_for(
        _is("Newexten", Uniqueid=f"{cid}.2", Application="MusicOnHold"), what="the hold"
    )
    two = await c.wait_for(_is("Newchannel", Uniqueid=f"{cid}.2"))
    return str(one["Channel"]), str(two["Channel"])


async def connect_seat(
    c: TestAmiClient, held: str, seat: str, context: str = "to-seat", *, answered: bool = True
) -> tuple[str, str]:
    """Redirect the held ;2 to a seat; return the seat's (;1 bridged half, ;2 phone half)."""
    await c.action(
        {"Action": "Redirect", "Channel": held, "Context": context, "Exten": seat, "Priority": "1"}
    )
    begin = await c.wait_for(
        lambda m: (
            m.get("Event") == "DialBegin"
            and m.get("Channel") == held
            and str(m.get("DestChannel", "")).startswith(f"Local/{seat}@")
        ),
        what=f"DialBegin to {seat}",
    )
    dest = str(begin["DestChannel"])
    if answered:
        await c.wait_for(_is("DialEnd", DestChannel=dest, DialStatus="ANSWER"), what="answer")
        await c.wait_for(_is("BridgeEnter", Channel=dest), what="seat bridged")
    return dest, dest[:-1] + "2"


async def hangup(c: TestAmiClient, channel: str) -> None:
    await c.action({"Action": "Hangup", "Channel": channel})


async def all_gone(c: TestAmiClient, prefix: str, timeout: float = 10.0) -> None:
    """Wait until every channel of the scenario's calls has hung up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        up: set[str] = set()
        for m in c.trace:
            if m.get("_cti") == "connected":
                up = set()  # what is still up after a reconnect is what the resync lists
            if str(m.get("Linkedid", "")).startswith(prefix):
                if m.get("Event") in {"Newchannel", "CoreShowChannel"}:
                    up.add(str(m["Uniqueid"]))
                elif m.get("Event") == "Hangup":
                    up.discard(str(m["Uniqueid"]))
        if not up:
            return
        if loop.time() > deadline:
            msg = f"channels still up after {timeout}s: {sorted(up)}"
            raise TimeoutError(msg)
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- scenarios


@scenario("basic/answered_caller_hangup")
async def answered_caller_hangup(c: TestAmiClient, cid: str) -> None:
    customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    await connect_seat(c, held, "1001")
    await asyncio.sleep(0.5)
    await hangup(c, customer)


@scenario("basic/answered_agent_hangup")
async def answered_agent_hangup(c: TestAmiClient, cid: str) -> None:
    _customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    _seat1, phone = await connect_seat(c, held, "1001")
    await asyncio.sleep(0.5)
    await hangup(c, phone)


@scenario("basic/abandoned_in_hold")
async def abandoned_in_hold(c: TestAmiClient, cid: str) -> None:
    customer, _held = await originate(c, cid, "12345")
    await asyncio.sleep(0.5)
    await hangup(c, customer)


@scenario("basic/agent_no_answer")
async def agent_no_answer(c: TestAmiClient, cid: str) -> None:
    customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    await connect_seat(c, held, "1001", "to-seat-noanswer", answered=False)
    await c.wait_for(_is("DialEnd", Channel=held, DialStatus="NOANSWER"), what="no answer")
    await c.wait_for(_is("Newexten", Channel=held, Application="MusicOnHold"), what="back in hold")
    await asyncio.sleep(0.3)
    await hangup(c, customer)


@scenario("basic/chinese_caller_line")
async def chinese_caller_line(c: TestAmiClient, cid: str) -> None:
    # an old department number (96123) merged into 12345: the dialplan sets CTI_LINE
    _customer, held = await originate(c, cid, "96123", '"张三" <13800138000>', "inbound-line")
    await asyncio.sleep(0.3)
    _seat1, phone = await connect_seat(c, held, "1001")
    await asyncio.sleep(0.5)
    await hangup(c, phone)


@scenario("transfer/blind")
async def blind(c: TestAmiClient, cid: str) -> None:
    customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    seat1, _phone = await connect_seat(c, held, "1001", "to-seat-xfer")
    await asyncio.sleep(0.5)
    await c.action(
        {"Action": "BlindTransfer", "Channel": seat1, "Context": "to-seat-xfer", "Exten": "1002"}
    )
    await c.wait_for(
        lambda m: (
            m.get("Event") == "DialEnd"
            and str(m.get("DestChannel", "")).startswith("Local/1002@seats")
            and m.get("Linkedid") == cid
        ),
        what="1002 answers",
    )
    await asyncio.sleep(0.5)
    await hangup(c, customer)


@scenario("transfer/external")
async def external(c: TestAmiClient, cid: str) -> None:
    customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    seat1, _phone = await connect_seat(c, held, "1001", "to-seat-xfer")
    await asyncio.sleep(0.5)
    await c.action(
        {"Action": "BlindTransfer", "Channel": seat1, "Context": "to-external", "Exten": "12315"}
    )
    await c.wait_for(
        lambda m: (
            m.get("Event") == "DialEnd"
            and str(m.get("DestChannel", "")).startswith("Local/12315@pstn")
            and m.get("DialStatus") == "ANSWER"
        ),
        what="the external number answers",
    )
    await asyncio.sleep(0.5)
    await hangup(c, customer)


@scenario("transfer/attended")
async def attended(c: TestAmiClient, cid: str) -> None:
    customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    seat1, _phone = await connect_seat(c, held, "1001", "to-seat-xfer")
    await asyncio.sleep(0.5)
    await c.action(
        {"Action": "Atxfer", "Channel": seat1, "Context": "atxfer-target", "Exten": "1002"}
    )
    await c.wait_for(
        lambda m: (
            m.get("Event") == "DialEnd"
            and str(m.get("DestChannel", "")).startswith("Local/1002@seats")
            and m.get("DialStatus") == "ANSWER"
        ),
        what="1002 answers the consultation",
    )
    await asyncio.sleep(0.5)
    await hangup(c, seat1)  # the transferer hangs up: the transfer completes
    await c.wait_for(_is("AttendedTransfer"), what="AttendedTransfer")
    await asyncio.sleep(0.5)
    await hangup(c, customer)


@scenario("transfer/attended_local_chain")
async def attended_local_chain(c: TestAmiClient, cid: str) -> None:
    """An older dialplan's traffic (issue 15): every leg runs through Dial(Local/...) chains
    (asterisk-sample/extensions.conf `to-seat-legacy`, `legacy-agent`, `atxfer-legacy`),
    and Asterisk optimises the middle Local pairs away while the calls are up."""
    customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    first, _ = await connect_seat(c, held, "1001", "to-seat-legacy")
    # the chain's next hop: legacy-agent;2 dials the seat's own Local pair
    seat_begin = await c.wait_for(
        lambda m: (
            m.get("Event") == "DialBegin"
            and m.get("Channel") == first[:-1] + "2"
            and str(m.get("DestChannel", "")).startswith("Local/1001@seats-talk")
        ),
        what="legacy-agent dials the seat",
    )
    seat1 = str(seat_begin["DestChannel"])
    # the legacy-agent pair optimised away: the seat's ;1 now sits in the caller's bridge,
    # and it is the channel that starts the attended transfer
    await c.wait_for(
        lambda m: m.get("Event") == "LocalOptimizationEnd" and m.get("LocalOneChannel") == first,
        what="the legacy-agent pair optimised away",
    )
    await asyncio.sleep(0.5)
    await c.action(
        {"Action": "Atxfer", "Channel": seat1, "Context": "atxfer-legacy", "Exten": "1002"}
    )
    await c.wait_for(
        lambda m: (
            m.get("Event") == "DialEnd"
            and str(m.get("DestChannel", "")).startswith("Local/1002@seats-talk")
            and m.get("DialStatus") == "ANSWER"
        ),
        what="1002 answers the consultation at the end of the chain",
    )
    await asyncio.sleep(1.0)  # let the consultation chain optimise
    await hangup(c, seat1)  # the transferer hangs up: the transfer completes
    await c.wait_for(_is("AttendedTransfer"), what="AttendedTransfer")
    await asyncio.sleep(0.5)
    await hangup(c, customer)


@scenario("multi/two_calls")
async def two_calls(c: TestAmiClient, cid: str) -> None:
    # One after the other: Asterisk refuses an Originate whose ChannelId is a prefix of a
    # live channel's Uniqueid (OriginateResponse Failure, Reason 0) — `cid` is a prefix of
    # `cid`+"b", so "b" must not exist yet when "a" is created. Both calls are up together.
    cust_a, held_a = await originate(c, cid, "12345")
    _cust_b, held_b = await originate(c, f"{cid}b", "12315", '"李四" <13700001111>')
    await asyncio.sleep(0.2)
    (_s, phone_a), (_s2, phone_b) = await asyncio.gather(
        connect_seat(c, held_a, "1001"), connect_seat(c, held_b, "1002")
    )
    await asyncio.sleep(0.4)
    await hangup(c, phone_b)
    await asyncio.sleep(0.2)
    await hangup(c, cust_a)
    del phone_a


@scenario("restart/asterisk_restart")
async def asterisk_restart(c: TestAmiClient, cid: str) -> None:
    """A call answered by a seat; Asterisk restarts; the client reconnects and resyncs."""
    _customer, held = await originate(c, cid, "12345")
    await asyncio.sleep(0.3)
    await connect_seat(c, held, "1001")
    await asyncio.sleep(0.5)
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "testbed"),
        "restart-asterisk",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await proc.wait()
    for _ in range(100):
        if not c.connected:
            break
        await asyncio.sleep(0.1)
    for _ in range(100):
        try:
            await c.connect()
            break
        except (RuntimeError, ConnectionError, TimeoutError):
            await asyncio.sleep(0.2)
    await c.wait_for(_is("FullyBooted"), what="FullyBooted after the restart")
    await c.resync()


@scenario("restart/reconnect_missed_events")
async def reconnect_missed_events(c: TestAmiClient, cid: str) -> None:
    """The daemon loses AMI while call A ends and call B starts; it reconnects, resyncs.

    Expected: A ends at the resync (hangup_by system, as of the disconnect); B is adopted
    (history_complete false) and ends normally later.
    """
    ctl = TestAmiClient(node="ctl")
    await ctl.connect()
    try:
        customer_a, held_a = await originate(c, cid, "12345")
        await asyncio.sleep(0.3)
        await connect_seat(c, held_a, "1001")
        await asyncio.sleep(0.3)
        await c.drop()
        await hangup(ctl, customer_a)
        cust_b, held_b = await originate(ctl, f"{cid}b", "12315", '"王五" <13600002222>')
        await connect_seat(ctl, held_b, "1002")
        await asyncio.sleep(0.3)
        await c.connect()
        await c.wait_for(_is("FullyBooted"), what="FullyBooted after the reconnect")
        await c.resync()
        await asyncio.sleep(0.3)
        await hangup(ctl, cust_b)
    finally:
        await ctl.close()


# --------------------------------------------------------------------------- running


def _keep(trace: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Only the messages of our calls (plus markers, resync ends, bridges we touched)."""
    bridges: set[str] = set()
    out: list[dict[str, Any]] = []
    for m in trace:
        ours = any(k.endswith("Linkedid") and str(v).startswith(prefix) for k, v in m.items())
        if ours:
            for k, v in m.items():
                if k.endswith("BridgeUniqueid") and v:
                    bridges.add(str(v))
    for m in trace:
        ev = m.get("Event")
        ours = any(k.endswith("Linkedid") and str(v).startswith(prefix) for k, v in m.items())
        keep = (
            "_cti" in m
            or ours
            or ev in {"CoreShowChannelsComplete", "FullyBooted", "Shutdown"}
            or (ev is not None and str(m.get("BridgeUniqueid", "")) in bridges)
        )
        if keep:
            out.append(m)
    return out


async def run_scenario(name: str, prefix: str | None = None) -> list[dict[str, Any]]:
    """Drive one scenario on the testbed; return its trace (markers included)."""
    prefix = prefix or f"t{secrets.token_hex(3)}"
    cid = f"{prefix}-{name.rsplit('/', maxsplit=1)[-1]}"
    c = TestAmiClient()
    await c.connect()
    try:
        await c.wait_for(_is("FullyBooted"), what="FullyBooted")
        await c.resync()
        await SCENARIOS[name](c, cid)
        await all_gone(c, prefix)
        await asyncio.sleep(0.2)
    except BaseException:
        # keep what happened for the post-mortem, then clean up the testbed
        write_jsonl(c.trace, Path(f"/tmp/scenario-{name.replace('/', '-')}.partial.jsonl"))
        for m in c.trace:
            if m.get("Event") == "Newchannel" and str(m.get("Linkedid", "")).startswith(prefix):
                try:
                    await c.action({"Action": "Hangup", "Channel": str(m["Channel"])})
                except Exception:
                    pass
        raise
    finally:
        await c.close()
    return _keep(c.trace, prefix)


def write_jsonl(trace: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for m in trace:
            f.write(json.dumps(m, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("scenario", nargs="*", help=f"one of {sorted(SCENARIOS)}")
    p.add_argument("--all", action="store_true")
    p.add_argument("--write", action="store_true", help="rewrite tests/fixtures/ami/...")
    args = p.parse_args(argv)
    names = sorted(SCENARIOS) if args.all else args.scenario
    for name in names:
        trace = asyncio.run(run_scenario(name))
        if args.write:
            write_jsonl(trace, FIXTURES / f"{name}.jsonl")
            print(f"{name}: {len(trace)} messages", file=sys.stderr)
        else:
            for m in trace:
                print(json.dumps(m, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A county node feeding the one queue (issue 14 item 3): the testbed's second Asterisk
(county1, asterisk-sample/county1/) takes a citizen's call to the county's 12345 and sends it
over the inter-node PJSIP trunk to the city's Asterisk, where it joins the city's line as
the county line 980112345 and a city seat answers. The daemon is connected to both nodes.

* The pop shows the county caller (number and display name, carried in From across the
  trunk), the county line and its department; the call record and the ticket are the
  city's call, under the county caller's number.
* The county node's own channels (the carrier leg, the trunk leg) are a transit call
  (ami.nodes[].transit): tracked, but no second record, ticket or pop, no error. Without
  `transit` (the first run of this test) the county leg was stored as a second call,
  answered by "city" (the trunk), and would have counted every county call twice.
* What the county node says in its trunk INVITE's X-CTI-* headers (read by the city's
  cti-from-trunk on that trunk only, numberplan.trunks[].node): the pop's, the ticket's and
  the record's `dialed` is what the citizen dialled at the county (12345), `via` names the
  county and the call's linkedid there (the transit call's id in the daemon's log).
* The city's leg is the call: a daemon restarted mid-call adopts a county call talking to
  a city seat and one waiting (its via read back from its channel), and a city seat's
  transfer to a department sends the county call on like any other, each reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Self

import pytest
import yaml

from cti.adapters.ami import AmiClient, EventQueue
from cti.events import AmiEvent
from tests.conftest import bed_node, unique
from tests.real.daemon_harness import Harness, write_config
from tests.real.sip import SipBed

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

ALL_SKILLS = {"general": 5, "market": 1, "env": 1, "health": 1, "hr": 1, "dialect": 1}
SEATS = [{"id": "1001", "endpoint": "PJSIP/6001", "skills": ALL_SKILLS}]
QUEUE = {"ring_timeout_s": 10, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
COUNTY_AMI_PORT = 5039  # asterisk-sample/county1/manager.conf
CALLER = "13900139000"


def county_config(
    tmp_path: Path, seats: list[dict[str, Any]], ami: dict[str, Any] | None = None
) -> tuple[Path, str]:
    """The testbed's configuration with the county node added as a transit node; `ami`
    overrides keys of the ami: section."""
    path, prefix = write_config(tmp_path, seats=seats, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    main = data["ami"]["nodes"][0]
    data["ami"]["nodes"].append(
        {**main, "name": "county1", "port": COUNTY_AMI_PORT, "transit": True}
    )
    data["ami"].update(ami or {})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    return county_config(tmp_path, SEATS)


async def county_channels() -> list[dict[str, Any]]:
    """The county node's channels now (CoreShowChannels over its own AMI)."""
    client = AmiClient(bed_node(name="county-driver", port=COUNTY_AMI_PORT), EventQueue(10_000))
    task = asyncio.create_task(client.run())
    try:
        await client.wait_connected(10)
        res = await client.action({"Action": "CoreShowChannels"})
        return [dict(e.headers) for e in res.items if isinstance(e, AmiEvent)]
    finally:
        task.cancel()


async def test_a_county_call_crosses_the_trunk_and_a_city_seat_answers_it_as_the_county_line(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with SipBed(tmp_path) as sip:
        await sip.phone("6001")
        async with Harness(*config) as h:
            await county_up(h, ready="1001")
            caller = await sip.call("12345", CALLER, talk_s=6, county=True)
            offers = await h.wait(
                lambda: h.published("seats/1001/pop", type="offer"), 20, "offer pop"
            )
            call = offers[0]["call"]
            call_id = call["call_id"]
            # the county caller's number and name crossed SIP -> county1 -> trunk -> city
            assert (call["caller"], call["caller_name"]) == (CALLER, "张三")
            assert (call["line"], call["line_name"], call["department"]) == (
                "980112345",
                "县区12345(county1)",
                "县政府热线办",
            )
            # what the county node said in its INVITE's X-CTI-* headers
            via = call["via"]
            assert (via["node"], via["dialed"]) == ("county1", "12345"), via
            assert via["call_id"].startswith("county1-"), via  # the county's systemname
            # the city's call: the city's node holds it, the seat is a city seat
            assert call["node"] == "main"
            await h.wait(lambda: h.answered_by(call_id), 15, "the city seat answered")
            assert h.answered_by(call_id) == "1001"
            # the county node's legs: its carrier's and the trunk to the city
            legs = {c["Channel"].rsplit("-", 1)[0] for c in await county_channels()}
            assert {"PJSIP/county-carrier", "PJSIP/city"} <= legs, legs
            city_legs = {c["Channel"].rsplit("-", 1)[0] for c in (await h.channels()).values()}
            assert {"PJSIP/county1", "PJSIP/6001"} <= city_legs, city_legs
            async with asyncio.timeout(30):
                assert await caller.wait() == 0, "sipp caller: see sipp-caller12345-*.log"
            ended = await h.wait(
                lambda: h.published("calls/events", call_id=call_id, type="ended"), 10, "record"
            )
            await h.wait(
                lambda: h.published("calls/events", call_id=call_id, type="ticket", op="update"),
                10,
                "the ticket's update delivered",
            )
            # the county's legs ended as a transit call, carried by the trunk to the city
            transit = await h.wait(
                lambda: h.log("transit_call_ended", node="county1"), 10, "county leg ended"
            )
            assert transit["carried_by"] == "city", transit
            assert transit["call_id"].startswith("county1-"), transit  # its systemname
            assert transit["call_id"] == via["call_id"], (transit, via)  # X-CTI-Origin
            # one call, one seat's pops: the county node's channels made no call of their own
            offers_all = h.published("seats/1001/pop", type="offer")
            assert len(offers_all) == 1, offers_all
            assert not [r for r in h.logs if r.get("level") in {"error", "critical"}]
    summary = ended[0]
    assert summary["outcome"] == "answered"
    assert summary["answered_by"] == "1001"
    assert summary["hangup_by"] == "caller"
    assert summary["via"] == via
    with sqlite3.connect(tmp_path / "cti.db") as db:
        records = db.execute(
            "select node, linkedid, caller, caller_name, dialed, line, answered_by"
            " from call_records"
        ).fetchall()
        ticket = db.execute(
            "select seat, caller, caller_name, line, line_name, department, call_facts"
            " from tickets where create_key = ?",
            (f"main:{call_id}:create",),
        ).fetchone()
    # exactly one record: the city's call, under the county caller and the county line
    assert records == [("main", call_id, CALLER, "张三", "12345", "980112345", "1001")], records
    assert ticket is not None
    assert ticket[:6] == ("1001", CALLER, "张三", "980112345", "县区12345(county1)", "县政府热线办")
    facts = json.loads(ticket[6])[f"main:{call_id}"]
    assert facts["outcome"] == "answered"
    assert facts["via"] == via


# ---------------------------------------------------------------- adoption and transfers
# Local seats (auto-answer, asterisk-sample/extensions.conf [seats]); the citizens are
# originated on the county node (several at once, which one sipp caller port cannot do):
# Local/<number>@county-from-carrier runs the county's dialplan, over the trunk to the city.

LOCAL_SEATS = [
    {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5}},
    {
        "id": "1002",
        "endpoint": "Local/1002@seats",
        "skills": {"general": 1, "market": 3, "env": 1, "health": 1, "hr": 1, "dialect": 1},
    },
]


@pytest.fixture
def local_config(tmp_path: Path) -> tuple[Path, str]:
    # the held call must still be held when the killed daemon is back (not in the fallback
    # Queue(), whose members are the sample's seats): a lease longer than the restart
    return county_config(tmp_path, LOCAL_SEATS, ami={"lease_s": 30.0, "lease_renew_s": 1.0})


class County:
    """The county node's AMI, to start and end its citizens' calls."""

    def __init__(self) -> None:
        self.client = AmiClient(
            bed_node(name="county-citizens", port=COUNTY_AMI_PORT), EventQueue(10_000)
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self.client.run())
        await self.client.wait_connected(10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.client.action(
                {
                    "Action": "Hangup",
                    "Channel": "/^Local\\/.*@county-(from-carrier|test-hostile)-/",
                },
                check=False,
            )
        if self._task is not None:
            self._task.cancel()

    async def call(
        self, number: str, caller: str, name: str, context: str = "county-from-carrier"
    ) -> str:
        """A citizen calls the county's `number`; returns the county's linkedid."""
        linkedid = f"county1-{unique()}"
        await self.client.action(
            {
                "Action": "Originate",
                "Channel": f"Local/{number}@{context}",
                "Application": "Wait",
                "Data": "120",
                "Async": "true",
                "ChannelId": linkedid,
                "OtherChannelId": f"{linkedid}.2",
                "CallerID": f'"{name}" <{caller}>',
            }
        )
        return linkedid

    async def hang_up_all(self) -> None:
        res = await self.client.action({"Action": "CoreShowChannels"})
        for ev in res.items:
            if isinstance(ev, AmiEvent) and ev.headers.get("Channel", "").startswith("Local/"):
                await self.client.action(
                    {"Action": "Hangup", "Channel": ev.headers["Channel"]}, check=False
                )

    async def hang_up(self, linkedid: str) -> None:
        res = await self.client.action({"Action": "CoreShowChannels"})
        for ev in res.items:
            if isinstance(ev, AmiEvent) and ev.headers.get("Uniqueid") == linkedid:
                await self.client.action(
                    {"Action": "Hangup", "Channel": ev.headers["Channel"]}, check=False
                )


def city_call_of(h: Harness, county_id: str) -> str | None:
    """The city's call id of the county's call, from the daemon's call_taken and the pop."""
    for _topic, body in h.messages:
        if isinstance(body, dict) and isinstance(body.get("call"), dict):
            via = body["call"].get("via") or {}
            if via.get("call_id") == county_id:
                return str(body["call"]["call_id"])
    return None


async def county_up(h: Harness, *, ready: str | None = None) -> None:
    """The daemon connected to the county node; `ready`: that seat logged in, ready."""
    await h.wait(lambda: h.log("ami_node_up", node="county1"), 20, "county1 node up")
    if ready is not None:
        assert (await h.seat(ready, {"cmd": "login", "ready": True}))["ok"] is True


def no_errors(h: Harness) -> None:
    bad = [r for r in h.logs if r.get("level") in {"error", "critical"}]
    assert not bad, bad


async def test_a_daemon_restart_mid_call_adopts_county_calls_talking_and_waiting(
    local_config: tuple[Path, str], tmp_path: Path
) -> None:
    """SIGKILL while a county call talks to a city seat and another waits: the restarted
    daemon follows the first to its end (the seat talking, then ready; one record) and
    takes the second from the holding loop with its county line and via read back from
    its channel (CTI_VIA_* in the Status it asks for), to the seat that frees up."""
    async with County() as county, Harness(*local_config) as h:
        await county_up(h, ready="1001")
        a_county = await county.call("12345", "13900139001", "王五")
        a = await h.wait(lambda: city_call_of(h, a_county), 20, "the first county call popped")
        await h.wait(lambda: h.answered_by(a), 15, "1001 answered the first call")
        b_county = await county.call("96310", "13900139002", "赵六")
        # (the logs mask a county line's 9 digits like a phone number: found by linkedid)
        held = await h.wait(
            lambda: [r for r in h.logs_of("call_taken") if r["linkedid"] != a],
            20,
            "the second call held",
        )
        b = held[0]["linkedid"]
        await h.wait(lambda: h.seat_states("1001")[-1:] == [("talking", None)], 5, "1001 talking")
        await asyncio.sleep(2.5)  # a heartbeat after the answer
        await h.kill_daemon()
        h.messages.clear()
        await h.start_daemon()
        b_taken = await h.wait(
            lambda: h.log("call_adoption_read", linkedid=b), 20, "the held call adopted"
        )
        assert b_taken["ok"] is True, b_taken
        # the seat is still on the first call, which the daemon follows again
        assert h.answered_by(b) is None
        await asyncio.sleep(1.0)
        assert ("ready", None) not in h.seat_states("1001")
        await county.hang_up(a_county)
        first = await h.wait(
            lambda: h.published("calls/events", call_id=a, type="ended"), 15, "the first's record"
        )
        assert (first[0]["outcome"], first[0]["answered_by"]) == ("answered", "1001")
        assert first[0]["via"]["call_id"] == a_county
        # the seat free again, the adopted call goes to it, with its county line and via
        offer = await h.wait(
            lambda: [
                p for p in h.published("seats/1001/pop", type="offer") if p["call"]["call_id"] == b
            ],
            15,
            "the adopted call offered to 1001",
        )
        call = offer[0]["call"]
        assert (call["line"], call["line_name"], call["caller"]) == (
            "980196310",
            "县城管热线(county1)",
            "13900139002",
        )
        assert call["via"] == {"node": "county1", "dialed": "96310", "call_id": b_county}
        await h.wait(lambda: h.answered_by(b), 15, "the adopted call answered")
        await county.hang_up(b_county)
        second = await h.wait(
            lambda: h.published("calls/events", call_id=b, type="ended"), 15, "the second's record"
        )
        assert (second[0]["outcome"], second[0]["answered_by"]) == ("answered", "1001")
        assert second[0]["dialed"] == "96310"
        await h.wait(lambda: h.seat_states("1001")[-1:] == [("ready", None)], 10, "1001 ready")
        await h.wait(
            lambda: len(h.logs_of("transit_call_ended")) == 2, 15, "both county legs ended"
        )
        no_errors(h)
    with sqlite3.connect(tmp_path / "cti.db") as db:
        records = db.execute(
            "select linkedid, node, dialed, line, answered_by, outcome from call_records"
            " order by started_at"
        ).fetchall()
        tickets = db.execute("select create_key from tickets").fetchall()
    # one record per citizen, the city's: none for the county's legs, none twice
    assert records == [
        (a, "main", "12345", "980112345", "1001", "answered"),
        (b, "main", "96310", "980196310", "1001", "answered"),
    ], records
    assert sorted(tickets) == sorted([(f"main:{a}:create",), (f"main:{b}:create",)]), tickets


async def test_a_city_seat_transfers_a_county_call_to_a_department(
    local_config: tuple[Path, str], tmp_path: Path
) -> None:
    """一键转接 of a county call by the city seat that answered it: the caller (the city's
    trunk leg from county1) back to the line with the department's skill, to the seat that
    has it; the county's legs carry on untouched; one transfer in the record and ticket."""
    async with County() as county, Harness(*local_config) as h:
        await county_up(h, ready="1001")
        county_id = await county.call("12345", "13900139003", "孙七")
        call_id = await h.wait(lambda: city_call_of(h, county_id), 20, "the county call popped")
        await h.wait(lambda: h.answered_by(call_id), 15, "1001 answered")
        await h.seat("1002", {"cmd": "login", "ready": True})
        reply = await h.seat("1001", {"cmd": "transfer", "target": "12315"})
        assert reply["ok"] is True, reply
        offer = await h.wait(
            lambda: h.published("seats/1002/pop", type="offer"), 15, "offered to 1002 (market)"
        )
        call = offer[0]["call"]
        assert call["call_id"] == call_id
        assert call["line"] == "980112345"
        assert call["via"] == {"node": "county1", "dialed": "12345", "call_id": county_id}
        await h.wait(lambda: ("talking", None) in h.seat_states("1002"), 15, "1002 talking")
        await h.wait(lambda: h.seat_states("1001")[-1] == ("ready", None), 5, "1001 free")
        # the county's legs are still up, carrying the same citizen
        legs = {c["Channel"].rsplit("-", 1)[0] for c in await county_channels()}
        assert "PJSIP/city" in legs, legs
        await county.hang_up(county_id)
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=call_id, type="ended"), 15, "the record"
        )
        await h.wait(
            lambda: h.published("calls/events", call_id=call_id, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        await h.wait(lambda: h.log("transit_call_ended", call_id=county_id), 10, "county leg")
        no_errors(h)
    summary = ended[0]
    assert (summary["outcome"], summary["answered_by"]) == ("answered", "1001")
    assert [(t["type"], t["by"], t["to"]) for t in summary["transfers"]] == [
        ("redirect", "1001", "12315")
    ]
    assert "1002" in summary["rang"]
    assert len(h.published("calls/events", call_id=call_id, type="ended")) == 1
    with sqlite3.connect(tmp_path / "cti.db") as db:
        records = db.execute("select linkedid, transfers from call_records").fetchall()
        [(facts,)] = db.execute(
            "select call_facts from tickets where create_key = ?", (f"main:{call_id}:create",)
        ).fetchall()
    assert [r[0] for r in records] == [call_id], records
    assert len(json.loads(records[0][1])) == 1
    transfers = json.loads(facts)[f"main:{call_id}"]["transfers"]
    assert [(t["by"], t["to"]) for t in transfers] == [("1001", "12315")]


async def test_hostile_x_cti_headers_are_refused_whole_and_the_call_goes_on(
    local_config: tuple[Path, str], tmp_path: Path
) -> None:
    """A county node sending X-CTI-Dialed with characters outside its set and an
    X-CTI-Origin too long (asterisk-sample/county1/ [county-test-hostile], reached by
    Originate only): the city's cti-node-header refuses each whole (not cut or cleaned
    into a value the node never sent), names it in CTI_NODE_HEADER_REFUSED, and the call
    is the county line's call all the same, its `dialed` the plan number."""
    async with County() as county, Harness(*local_config) as h:
        await county_up(h, ready="1001")
        await county.call("12345", "13900139004", "周八", context="county-test-hostile")
        offers = await h.wait(
            lambda: h.published("seats/1001/pop", type="offer"), 20, "the county call popped"
        )
        call = offers[0]["call"]
        call_id = call["call_id"]
        assert (call["line"], call["caller"]) == ("980112345", "13900139004")
        # the node is the trunk's (configuration), the refused headers are not there at all
        assert call["via"] == {"node": "county1", "dialed": "", "call_id": ""}, call
        await h.wait(lambda: h.answered_by(call_id), 15, "1001 answered")
        refused = set()
        while h.ami_events.qsize():
            ev = h.ami_events.get_nowait()
            if (
                isinstance(ev, AmiEvent)
                and ev.name == "VarSet"
                and ev.headers.get("Variable") == "CTI_NODE_HEADER_REFUSED"
                and ev.headers.get("Linkedid") == call_id
            ):
                refused.add(ev.headers.get("Value"))
        assert refused == {"X-CTI-Dialed", "X-CTI-Origin"}, refused
        await county.hang_up_all()
        ended = await h.wait(
            lambda: h.published("calls/events", call_id=call_id, type="ended"), 15, "the record"
        )
        no_errors(h)
    assert ended[0]["dialed"] == "980112345"  # the trunk's number: nothing else was believed
    assert ended[0]["via"] == {"node": "county1", "dialed": "", "call_id": ""}

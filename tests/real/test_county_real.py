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
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from cti.adapters.ami import AmiClient, EventQueue
from cti.events import AmiEvent
from tests.conftest import bed_node
from tests.real.daemon_harness import Harness, write_config
from tests.real.sip import SipBed

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

ALL_SKILLS = {"general": 5, "market": 1, "env": 1, "health": 1, "hr": 1, "dialect": 1}
SEATS = [{"id": "1001", "endpoint": "PJSIP/6001", "skills": ALL_SKILLS}]
QUEUE = {"ring_timeout_s": 10, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}
COUNTY_AMI_PORT = 5039  # asterisk-sample/county1/manager.conf
CALLER = "13900139000"


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    main = data["ami"]["nodes"][0]
    data["ami"]["nodes"].append(
        {**main, "name": "county1", "port": COUNTY_AMI_PORT, "transit": True}
    )
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


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
            await h.wait(lambda: h.log("ami_node_up", node="county1"), 20, "county1 node up")
            assert (await h.seat("1001", {"cmd": "login", "ready": True}))["ok"] is True
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
            # one call, one seat's pops: the county node's channels made no call of their own
            offers_all = h.published("seats/1001/pop", type="offer")
            assert len(offers_all) == 1, offers_all
            assert not [r for r in h.logs if r.get("level") in {"error", "critical"}]
    summary = ended[0]
    assert summary["outcome"] == "answered"
    assert summary["answered_by"] == "1001"
    assert summary["hangup_by"] == "caller"
    with sqlite3.connect(tmp_path / "cti.db") as db:
        records = db.execute(
            "select node, linkedid, caller, caller_name, line, answered_by from call_records"
        ).fetchall()
        ticket = db.execute(
            "select seat, caller, caller_name, line, line_name, department, call_facts"
            " from tickets where create_key = ?",
            (f"main:{call_id}:create",),
        ).fetchone()
    # exactly one record: the city's call, under the county caller and the county line
    assert records == [("main", call_id, CALLER, "张三", "980112345", "1001")], records
    assert ticket is not None
    assert ticket[:6] == ("1001", CALLER, "张三", "980112345", "县区12345(county1)", "县政府热线办")
    assert json.loads(ticket[6])[f"main:{call_id}"]["outcome"] == "answered"

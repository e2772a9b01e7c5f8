"""The inter-node trunk cut live (issue 14 item 3; docs/county-nodes.md "The trunk cut"):
``scripts/testbed trunk-cut`` drops every UDP packet between the city's and county1's SIP
ports and RTP ranges (policy-routing blackhole rules; nothing else on loopback is touched),
``trunk-restore`` ends it.

* A county citizen calling while the trunk is cut is not hung up on: the county node
  answers, says "please hold" and tries the trunk again every few seconds; once the trunk
  is back the call crosses it, joins the one line as the county line, a city seat answers,
  one record and one ticket, under the county caller.
* A county call talking to a city seat when the trunk is cut does not stay up as a silent
  ghost for ever: both nodes hang up their trunk leg after 8 s without RTP (rtp_timeout;
  rtp_keepalive keeps a silent call up while the trunk is there). The daemon records the
  call ended and frees the seat; the county's transit call ends too.
* A call the trunk never carries (the tries used up) hears "please try your call later"
  and ends; the daemon logs it ``transit_call_not_carried``, with no record of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.real.daemon_harness import Harness
from tests.real.daemon_harness import poll_async as until
from tests.real.test_county_real import (
    LOCAL_SEATS,
    County,
    city_call_of,
    county_channels,
    county_config,
    county_up,
    no_errors,
)

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

TESTBED = PROJECT / "scripts" / "testbed"


async def run_testbed(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(TESTBED), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")


@asynccontextmanager
async def trunk_cut() -> AsyncIterator[None]:
    """The trunk cut for the block's duration (restored however it ends: `testbed up`
    restores it too, should a run die inside)."""
    await run_testbed("trunk-cut")
    try:
        yield
    finally:
        await run_testbed("trunk-restore")


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    return county_config(tmp_path, LOCAL_SEATS)


async def county_leg(county_id: str) -> dict[str, str] | None:
    """The county citizen's channel in [county-to-city], if it is there."""
    for c in await county_channels():
        if c.get("Linkedid") == county_id and c.get("Context") == "county-to-city":
            return c
    return None


async def test_a_county_call_during_a_cut_is_held_at_the_county_and_carried_when_it_is_back(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with County() as county, Harness(*config) as h:
        await county_up(h, ready="1001")
        async with trunk_cut():
            county_id = await county.call("12345", "13900139011", "钱八")

            async def held() -> dict[str, str] | None:
                c = await county_leg(county_id)
                if c and c.get("Application") in {"Playback", "MusicOnHold"}:
                    return c
                await asyncio.sleep(0.3)
                return None

            # the county answered its citizen and holds it: no hangup, nothing at the city
            leg = await until(held, 20, "the county holding its caller")
            assert leg["ChannelStateDesc"] == "Up", leg
            await asyncio.sleep(3)
            assert city_call_of(h, county_id) is None
            assert await county_leg(county_id) is not None
            cut_over = time.monotonic()
        # the trunk is back: the next try carries the call (the contact is qualified
        # again within qualify_frequency, then the retry's Dial goes through)
        call_id = await h.wait(lambda: city_call_of(h, county_id), 40, "the county call popped")
        carried_after_s = time.monotonic() - cut_over
        await h.wait(lambda: h.answered_by(call_id), 15, "1001 answered")
        offer = h.published("seats/1001/pop", type="offer")[0]["call"]
        assert offer["line"] == "980112345"
        assert offer["via"] == {"node": "county1", "dialed": "12345", "call_id": county_id}
        assert offer["caller"] == "13900139011"
        await county.hang_up(county_id)
        await h.wait(
            lambda: h.published("calls/events", call_id=call_id, type="ended"), 15, "the record"
        )
        await h.wait(
            lambda: h.published("calls/events", call_id=call_id, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        no_errors(h)
    assert carried_after_s < 25, carried_after_s  # qualify 5 s + a hold of 5 s + a Dial
    with sqlite3.connect(tmp_path / "cti.db") as db:
        records = db.execute(
            "select linkedid, caller, line, answered_by from call_records"
        ).fetchall()
        tickets = db.execute("select create_key from tickets").fetchall()
    assert records == [(call_id, "13900139011", "980112345", "1001")], records
    assert tickets == [(f"main:{call_id}:create",)], tickets


async def test_a_talking_county_call_ends_on_both_nodes_when_the_trunk_is_cut(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with County() as county, Harness(*config) as h:
        await county_up(h, ready="1001")
        county_id = await county.call("12345", "13900139012", "孙九")
        call_id = await h.wait(lambda: city_call_of(h, county_id), 20, "the county call popped")
        await h.wait(lambda: h.answered_by(call_id), 15, "1001 answered")
        # a silent call (Local seats send no audio) stays up across 12 s while the trunk is
        # there: the keepalives count as RTP on both sides
        await asyncio.sleep(12)
        assert not h.published("calls/events", call_id=call_id, type="ended")
        async with trunk_cut():
            t0 = time.monotonic()
            ended = await h.wait(
                lambda: h.published("calls/events", call_id=call_id, type="ended"),
                25,
                "the city's leg hung up by its RTP timeout",
            )
            ended_after_s = time.monotonic() - t0
            await h.wait(lambda: h.seat_states("1001")[-1] == ("ready", None), 10, "1001 free")
            await h.wait(
                lambda: h.log("transit_call_ended", call_id=county_id), 25, "the county's leg"
            )
        await h.wait(
            lambda: h.published("calls/events", call_id=call_id, type="ticket", op="update"),
            10,
            "the ticket's update delivered",
        )
        no_errors(h)
    assert 6 <= ended_after_s <= 20, ended_after_s  # rtp_timeout = 8
    summary = ended[0]
    assert (summary["outcome"], summary["answered_by"]) == ("answered", "1001")
    assert len(h.published("calls/events", call_id=call_id, type="ended")) == 1
    with sqlite3.connect(tmp_path / "cti.db") as db:
        [(n,)] = db.execute("select count(*) from call_records").fetchall()
    assert n == 1


async def test_a_county_call_the_trunk_never_carries_is_told_to_call_later(
    config: tuple[Path, str], tmp_path: Path
) -> None:
    async with County() as county, Harness(*config) as h:
        await county_up(h)
        # two tries instead of the sample's 12 (a minute): the test's own setting
        await county.client.action(
            {"Action": "Setvar", "Variable": "COUNTY_TRUNK_TRIES", "Value": "2"}
        )
        try:
            async with trunk_cut():
                county_id = await county.call("12345", "13900139013", "周十")

                async def told() -> dict[str, str] | None:
                    c = await county_leg(county_id)
                    if c and c.get("ApplicationData") == "please-try-call-later":
                        return c
                    await asyncio.sleep(0.2)
                    return None

                await until(told, 30, "please try your call later")
                not_carried = await h.wait(
                    lambda: h.log("transit_call_not_carried", call_id=county_id),
                    20,
                    "the daemon's warning",
                )
        finally:
            await county.client.action(
                {"Action": "Setvar", "Variable": "COUNTY_TRUNK_TRIES", "Value": "12"}
            )
        assert not_carried["level"] == "warning"
        assert "13900139013" not in str(not_carried)  # masked
        assert city_call_of(h, county_id) is None
        no_errors(h)
    with sqlite3.connect(tmp_path / "cti.db") as db:
        [(n,)] = db.execute("select count(*) from call_records").fetchall()
    assert n == 0

"""The AMI client against an in-process fake manager: actions, ordering, failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.adapters.ami import (
    AmiActionError,
    AmiActionTimeoutError,
    AmiClient,
    AmiConnectionLostError,
    AmiLoginError,
    AmiNotConnectedError,
    EventQueue,
    QueueItem,
    _ami_major,
    server_filters,
)
from cti.adapters.backoff import backoff_delay
from cti.events import (
    AmiConnected,
    AmiDisconnected,
    AmiEvent,
    AmiEventsLost,
    FullyBooted,
    Newchannel,
    OriginateResponse,
)
from cti.settings import AmiNode
from tests.fakeami import FakeAmi, wire


def node(port: int, **kw: Any) -> AmiNode:
    base: dict[str, Any] = {
        "name": "test",
        "host": "127.0.0.1",
        "port": port,
        "username": "cti",
        "secret": "s3cret",
        "connect_timeout": 2.0,
        "action_timeout": 1.0,
        "ping_interval": 0.3,
        "ping_timeout": 0.2,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
    }
    base.update(kw)
    return AmiNode(**base)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    srv = await FakeAmi().start()
    yield srv
    await srv.stop()


async def next_of(q: EventQueue, kind: type[Any], timeout: float = 3.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            item = await q.get()
            if isinstance(item, kind):
                return item


async def started(fake: FakeAmi, **kw: Any) -> tuple[AmiClient, EventQueue, asyncio.Task[None]]:
    q = EventQueue(1000)
    client = AmiClient(node(fake.port, **kw), q)
    task = asyncio.create_task(client.run())
    await client.wait_connected(3)
    return client, q, task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_login_connected_event_precedes_fully_booted(fake: FakeAmi) -> None:
    _client, q, task = await started(fake)
    first = await q.get()
    assert isinstance(first, AmiConnected)
    assert (first.node, first.version, first.reconnect) == ("test", "11.0.0", False)
    assert isinstance(await q.get(), FullyBooted)
    await stopped(task)


async def test_wrong_secret_is_a_clear_error_not_a_silent_retry(fake: FakeAmi) -> None:
    q = EventQueue(100)
    client = AmiClient(node(fake.port, secret="wrong"), q)
    with pytest.raises(AmiLoginError, match="refused: Authentication failed"):
        async with asyncio.timeout(3):
            await client.run()
    assert len(fake.actions("Login")) == 1


async def test_single_reply_resolves_queueadd_style(fake: FakeAmi) -> None:
    fake.on_action(
        "QueueAdd", lambda a: [{"Response": "Success", "Message": "Added interface to queue"}]
    )
    client, _, task = await started(fake)
    reply = await client.action({"Action": "QueueAdd", "Queue": "q", "Interface": "Local/1@s"})
    assert reply.ok
    assert reply.message == "Added interface to queue"
    await stopped(task)


async def test_error_reply_raises_with_message(fake: FakeAmi) -> None:
    client, _, task = await started(fake)
    with pytest.raises(AmiActionError, match="Invalid/unknown command"):
        await client.action({"Action": "NoSuch"})
    reply = await client.action({"Action": "NoSuch"}, check=False)
    assert not reply.ok
    await stopped(task)


async def test_list_action_collects_items(fake: FakeAmi) -> None:
    def status(a: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"Response": "Success", "EventList": "start", "Message": "follows"},
            {
                "Event": "CoreShowChannel",
                "ActionID": a["ActionID"],
                "Channel": "PJSIP/1-1",
                "Uniqueid": "1.1",
                "Linkedid": "1.1",
            },
            {
                "Event": "CoreShowChannel",
                "ActionID": a["ActionID"],
                "Channel": "PJSIP/2-1",
                "Uniqueid": "1.2",
                "Linkedid": "1.1",
            },
            {
                "Event": "CoreShowChannelsComplete",
                "ActionID": a["ActionID"],
                "EventList": "Complete",
                "ListItems": "2",
            },
        ]

    fake.on_action("CoreShowChannels", status)
    client, _q, task = await started(fake)
    reply = await client.action({"Action": "CoreShowChannels"})
    assert [e.headers["Channel"] for e in reply.items] == ["PJSIP/1-1", "PJSIP/2-1"]
    await stopped(task)


async def test_resync_items_are_streamed_in_wire_order(fake: FakeAmi) -> None:
    def status(a: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"Response": "Success", "EventList": "start", "Message": "follows"},
            {"Event": "Newchannel", "Channel": "PJSIP/9-1", "Uniqueid": "9.1"},  # interleaved
            {
                "Event": "CoreShowChannel",
                "ActionID": a["ActionID"],
                "Channel": "PJSIP/1-1",
                "Uniqueid": "1.1",
            },
            {
                "Event": "CoreShowChannelsComplete",
                "ActionID": a["ActionID"],
                "EventList": "Complete",
                "ListItems": "1",
            },
        ]

    fake.on_action("CoreShowChannels", status)
    _client, q, task = await started(fake)
    names: list[str] = []
    async with asyncio.timeout(3):
        while not names or names[-1] != "CoreShowChannelsComplete":
            item = await q.get()
            names.append(type(item).__name__ if not hasattr(item, "name") else item.name)
    assert names == [
        "AmiConnected",
        "FullyBooted",
        "Newchannel",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
    ]
    await stopped(task)


async def test_async_originate_resolves_on_originate_response(fake: FakeAmi) -> None:
    def originate(a: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"Response": "Success", "Message": "Originate successfully queued"},
            {"Event": "Newchannel", "Channel": "Local/1@x-1;1", "Uniqueid": "u1"},
            {
                "Event": "OriginateResponse",
                "ActionID": a["ActionID"],
                "Response": "Success",
                "Channel": "Local/1@x-1;1",
                "Uniqueid": "u1",
                "Reason": "4",
            },
        ]

    fake.on_action("Originate", originate)
    client, q, task = await started(fake)
    reply = await client.action(
        {
            "Action": "Originate",
            "Channel": "Local/1@x",
            "Async": "true",
            "Application": "Wait",
            "Data": "1",
        }
    )
    [resp] = reply.items
    assert isinstance(resp, OriginateResponse)
    assert resp.reason == 4
    # the core also sees it, after the Newchannel that preceded it on the wire
    assert isinstance(await next_of(q, Newchannel), Newchannel)
    assert isinstance(await next_of(q, OriginateResponse), OriginateResponse)
    await stopped(task)


async def test_failed_originate_raises(fake: FakeAmi) -> None:
    fake.on_action(
        "Originate",
        lambda a: [
            {"Response": "Success", "Message": "Originate successfully queued"},
            {
                "Event": "OriginateResponse",
                "ActionID": a["ActionID"],
                "Response": "Failure",
                "Channel": "Local/1@x",
                "Uniqueid": "<unknown>",
                "Reason": "0",
            },
        ],
    )
    client, _, task = await started(fake)
    with pytest.raises(AmiActionError):
        await client.action({"Action": "Originate", "Channel": "Local/1@x", "Async": "yes"})
    await stopped(task)


async def test_action_timeout_is_clear(fake: FakeAmi) -> None:
    fake.on_action("Slow", lambda a: None)
    client, _, task = await started(fake)
    with pytest.raises(AmiActionTimeoutError, match=r"no complete reply to Slow within 0.1 s"):
        await client.action({"Action": "Slow"}, timeout=0.1)
    assert client._pending == {}
    await stopped(task)


async def test_not_connected_sends_nothing(fake: FakeAmi) -> None:
    client = AmiClient(node(fake.port), EventQueue(100))
    with pytest.raises(AmiNotConnectedError):
        await client.action({"Action": "Ping"})
    assert fake.received == []


async def test_in_flight_action_fails_and_is_never_resent(fake: FakeAmi) -> None:
    fake.on_action("Redirect", lambda a: None)  # Asterisk never answers, then the link drops
    client, q, task = await started(fake)
    pending = asyncio.create_task(client.action({"Action": "Redirect", "Channel": "X"}, timeout=5))
    await asyncio.sleep(0.1)
    fake.drop_all()
    with pytest.raises(AmiConnectionLostError, match="not re-sent"):
        await pending
    assert isinstance(await next_of(q, AmiDisconnected), AmiDisconnected)
    again = await next_of(q, AmiConnected)
    assert again.reconnect is True
    await asyncio.sleep(0.3)
    assert len(fake.actions("Redirect")) == 1
    assert fake.logins == 2
    await stopped(task)


async def test_half_open_connection_is_detected_by_ping(fake: FakeAmi) -> None:
    _client, q, task = await started(fake)
    fake.answer_pings = False  # the socket stays open, nothing answers: half-open
    gone = await next_of(q, AmiDisconnected, timeout=3)
    assert gone.node == "test"
    fake.answer_pings = True
    assert (await next_of(q, AmiConnected)).reconnect is True
    await stopped(task)


async def test_server_down_then_up_reconnects(fake: FakeAmi) -> None:
    client, q, task = await started(fake)
    port = fake.port
    await fake.stop()
    await next_of(q, AmiDisconnected)
    await asyncio.sleep(0.3)  # a few refused connects
    assert client.state in {"backoff", "connecting"}
    fake.port = port
    await fake.start()
    assert (await next_of(q, AmiConnected, timeout=5)).reconnect is True
    await stopped(task)


async def test_garbage_from_server_does_not_kill_the_connection(fake: FakeAmi) -> None:
    client, q, task = await started(fake)
    fake.push_raw(b"\x00\xff garbage without colon\r\n\r\n")
    fake.push_raw(b"Event: Newchannel\r\nChannel: A\r\nUniqueid: 1.1\r\nChannelState: x\r\n\r\n")
    ev = await next_of(q, Newchannel)
    assert ev.chan.state is None  # "x" is not a state: read as unknown
    assert client.connected
    assert (await client.action({"Action": "Ping"})).ok
    await stopped(task)


async def test_events_arrive_in_wire_order(fake: FakeAmi) -> None:
    _client, q, task = await started(fake)
    await next_of(q, FullyBooted)
    data = b"".join(
        wire({"Event": "UserEvent", "UserEvent": "seq", "N": str(i)}) for i in range(500)
    )
    for i in range(0, len(data), 777):  # odd chunking
        fake.push_raw(data[i : i + 777])
    got = [int((await q.get()).headers["N"]) for _ in range(500)]  # type: ignore[union-attr]
    assert got == list(range(500))
    await stopped(task)


async def test_queue_overflow_is_reported_then_marker_goes_in() -> None:
    q = EventQueue(100)
    for i in range(150):
        q.put(AmiDisconnected(node="n1", time=float(i), reason="x"))
    assert q.qsize() == 100
    assert q.dropped_total == 50
    items: list[QueueItem] = [q.get_nowait() for _ in range(100)]
    assert all(isinstance(i, AmiDisconnected) for i in items)
    # the marker is in as soon as there was room, before anything newer from that node
    lost = q.get_nowait()
    assert isinstance(lost, AmiEventsLost)
    assert lost.count == 50


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 30.0, rng) for a in range(20)]
    assert all(0.5 <= d <= 30.0 for d in delays)
    assert max(delays[:3]) <= 2.0
    assert len(set(delays)) == 20


async def test_requested_resync_streams_the_list_again(fake: FakeAmi) -> None:
    client, q, task = await started(fake)
    await next_of(q, FullyBooted)
    await asyncio.sleep(0.1)
    assert len(fake.actions("CoreShowChannels")) == 1  # the one after login
    client.request_resync()
    client.request_resync()  # coalesced
    done = await next_of(q, AmiEvent)
    while done.name != "CoreShowChannelsComplete":
        done = await next_of(q, AmiEvent)
    await asyncio.sleep(0.1)
    assert len(fake.actions("CoreShowChannels")) == 2
    await stopped(task)


async def test_two_nodes_share_one_queue_and_tag_their_events() -> None:
    one, two = await FakeAmi().start(), await FakeAmi().start()
    q = EventQueue(1000)
    clients = [
        AmiClient(node(one.port, name="pbx-a"), q),
        AmiClient(node(two.port, name="pbx-b"), q),
    ]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    try:
        for c in clients:
            await c.wait_connected(3)
        one.push({"Event": "Newchannel", "Channel": "PJSIP/a-1", "Uniqueid": "1.1"})
        two.push({"Event": "Newchannel", "Channel": "PJSIP/b-1", "Uniqueid": "1.1"})
        seen: dict[str, str] = {}
        async with asyncio.timeout(3):
            while len(seen) < 2:
                ev = await q.get()
                if isinstance(ev, Newchannel):
                    seen[ev.node] = ev.chan.channel
        assert seen == {"pbx-a": "PJSIP/a-1", "pbx-b": "PJSIP/b-1"}
    finally:
        for t in tasks:
            t.cancel()
        await one.stop()
        await two.stop()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(1, 400), min_size=1, max_size=60),
    junk=st.lists(st.binary(max_size=40), max_size=5),
)
def test_receive_path_survives_any_chunking_and_garbage(cuts: list[int], junk: list[bytes]) -> None:
    """The client's live receive path, fed bytes directly: never raises, and every event
    that was on the wire comes out, in order, whatever the chunking and noise between."""
    good = [
        wire({"Event": "UserEvent", "UserEvent": "seq", "N": str(i), "Name": "张三"})
        for i in range(20)
    ]
    stream = b"Asterisk Call Manager/11.0.0\r\n"
    for i, msg in enumerate(good):
        stream += msg
        if i < len(junk):  # noise framed as its own block, like a broken peer would send
            stream += junk[i].replace(b"\r\n\r\n", b"") + b"\r\n\r\n"

    async def go() -> list[int]:
        q = EventQueue(1000)
        client = AmiClient(node(1), q)
        i = 0
        for n in cuts:
            client._on_data(stream[i : i + n])
            i += n
        client._on_data(stream[i:])
        out = []
        while q.qsize():
            ev = q.get_nowait()
            if isinstance(ev, AmiEvent) and ev.headers.get("UserEvent") == "seq":
                assert ev.headers["Name"] == "张三"
                out.append(int(ev.headers["N"]))
        return out

    assert asyncio.run(go()) == list(range(20))


def test_server_filters_include_what_is_read_and_the_variables_by_regex() -> None:
    got = server_filters({"Newchannel", "VarSet", "Hangup"}, {"CTI_LINE", "X1"})
    assert [a["MatchCriteria"] for a in got] == [
        "action(include),name(Hangup)",
        "action(include),name(Newchannel)",
        "action(include),name(OriginateResponse)",  # the executor waits for it
        "action(include),name(VarSet),header(Variable),method(regex)",
    ]
    assert {a["Action"] for a in got} == {"Filter"}
    assert {a["Operation"] for a in got} == {"Add"}
    assert got[-1]["Filter"] == "^_*(CTI_LINE|X1)$"  # __CTI_LINE (inherited) too
    # a variable name that is not a plain name is not put in a regex: every VarSet comes
    odd = server_filters({"VarSet"}, {"A|B"})
    assert {
        "Action": "Filter",
        "Operation": "Add",
        "MatchCriteria": "action(include),name(VarSet)",
    } in odd
    assert all("Filter" not in a for a in odd)


def test_ami_major_of_odd_versions() -> None:
    assert _ami_major("11.0.0") == 11
    assert _ami_major("9.0.0") == 9
    assert _ami_major("") == 0
    assert _ami_major("x.1") == 0
    assert _ami_major("9" * 5000) == 0  # a hostile banner costs nothing


async def test_server_filter_refused_is_logged_and_events_still_flow(fake: FakeAmi) -> None:
    """The fake refuses Filter (unknown command), as an Asterisk would a user without the
    `system` permission: the session goes on, the decoder drops what it does not read."""
    q = EventQueue(1000)
    client = AmiClient(
        node(fake.port), q, keep_events={"Newchannel", "FullyBooted"}, filter_on_server=True
    )
    task = asyncio.create_task(client.run())
    await client.wait_connected(3)
    async with asyncio.timeout(3):
        while len(fake.actions("Filter")) < 3:
            await asyncio.sleep(0.01)
    assert {a["MatchCriteria"] for a in fake.actions("Filter")} == {
        "action(include),name(FullyBooted)",
        "action(include),name(Newchannel)",
        "action(include),name(OriginateResponse)",
    }
    assert client.server_filtered is False
    fake.push({"Event": "Newchannel", "Channel": "PJSIP/a-1", "Uniqueid": "u1"})
    assert (await next_of(q, Newchannel)).chan.uniqueid == "u1"
    await stopped(task)


async def test_no_server_filter_without_keep_events(fake: FakeAmi) -> None:
    client = AmiClient(node(fake.port), EventQueue(100), filter_on_server=True)
    task = asyncio.create_task(client.run())
    await client.wait_connected(3)
    await client.action({"Action": "Ping"}, check=False)
    assert fake.actions("Filter") == []
    await stopped(task)

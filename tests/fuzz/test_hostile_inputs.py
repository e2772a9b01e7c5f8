"""Hostile input, property-tested (issue 15): every decoder and parser the network feeds.

Garbage bytes, truncation at any point, huge values, wrong encodings (GBK, UTF-16, lone
surrogates), CR/LF injection and deep nesting, through the targets in fuzz/targets.py
(the same the atheris harnesses drive). Each target raises when the contract breaks: only
the documented error type escapes, nothing hangs (every async target runs under a
deadline), the AMI decoder resynchronises after garbage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.adapters.amiwire import encode_action
from cti.calls import CallTracker
from fuzz import targets

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOSTILE_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "",
            "nan",
            "inf",
            "-1",
            "1e308",
            "9" * 5000,  # past int()'s 4,300-digit limit
            "\r\nAction: Originate\r\n",  # CR/LF injection
            "张三\udcff",  # a lone surrogate
            "Local/1001@seats-00000001;1",
            "Local/;2",
            "\x00" * 10,
            "0x1f",
        ]
    ),
)
WRONG_ENCODINGS = st.text(max_size=40).flatmap(
    lambda s: st.sampled_from(
        [s.encode("gb18030"), s.encode("utf-16"), s.encode("utf-8", "surrogatepass")]
    )
)
RAW = st.one_of(st.binary(max_size=600), WRONG_ENCODINGS)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


# --------------------------------------------------------------------------- AMI


@FUZZ
@given(RAW, st.lists(st.integers(0, 80), max_size=12))
def test_amiwire_resyncs_after_garbage(data: bytes, cuts: list[int]) -> None:
    targets.amiwire(data, cuts)


@FUZZ
@given(st.integers(1, len(targets.VALID)))
def test_amiwire_resyncs_after_a_truncated_message(cut: int) -> None:
    # a message cut anywhere (a peer's restart), then the stream goes on
    targets.amiwire(targets.VALID[:cut])


def test_amiwire_resyncs_after_an_oversized_block() -> None:
    targets.amiwire(b"X" * (4 * 1024 * 1024 + 10), [1024 * 1024] * 4)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(targets.HEADER_NAMES), HOSTILE_TEXT), max_size=20))
def test_ami_client_on_hostile_messages(pairs: list[tuple[str, str]]) -> None:
    wire = (
        b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogateescape") for k, v in pairs)
        + b"Event: Hangup\r\n\r\nResponse: Success\r\nActionID: nope\r\n\r\n"
    )
    targets.ami_client(wire)


@FUZZ
@given(RAW)
def test_ami_client_on_garbage_bytes(data: bytes) -> None:
    targets.ami_client(data)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("Event"), st.sampled_from(targets.EVENT_NAMES)),
            st.tuples(st.sampled_from(targets.HEADER_NAMES), HOSTILE_TEXT),
        ),
        max_size=80,
    )
)
def test_event_parser_and_tracker_on_hostile_events(pairs: list[tuple[str, str]]) -> None:
    targets.ami_events(pairs)


def test_tracker_survives_a_shared_run_of_garbage() -> None:
    """One tracker over many garbage runs (state accumulates, like a daemon's)."""
    tracker = CallTracker()
    for i in range(300):
        targets.ami_events(
            [
                ("Event", targets.EVENT_NAMES[i % len(targets.EVENT_NAMES)]),
                ("Uniqueid", f"u{i % 7}"),
                ("Linkedid", f"u{i % 3}"),
                ("Channel", "Local/1@x-1;1" if i % 2 else "PJSIP/1001-1"),
                ("Timestamp", ["nan", "inf", "1e308", "-5", "1700000000"][i % 5]),
                ("BridgeUniqueid", f"b{i % 2}"),
            ],
            tracker,
        )


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-inf", "1e308", "-1", "0", "abc"])
def test_an_impossible_timestamp_is_replaced_by_the_receive_time(timestamp: str) -> None:
    # found by this fuzzing: "nan"/"inf" became a call's started_at (invalid JSON, no date)
    targets.ami_events([("Event", "Newchannel"), ("Uniqueid", "x"), ("Timestamp", timestamp)])


@given(HOSTILE_TEXT, HOSTILE_TEXT)
def test_encode_action_refuses_line_breaks(key: str, value: str) -> None:
    try:
        data = encode_action({"Action": "Setvar", key or "k": value})
    except ValueError:
        return
    # what it accepted cannot frame a second action or header
    assert data.count(b"\r\n\r\n") == 1
    assert data.count(b"\r\n") == 3


# --------------------------------------------------------------------------- FastAGI


@FUZZ
@given(RAW)
def test_fastagi_request_reader_on_garbage(loop: asyncio.AbstractEventLoop, data: bytes) -> None:
    targets.fastagi_headers(data, loop)


@FUZZ
@given(st.lists(st.tuples(HOSTILE_TEXT, HOSTILE_TEXT), max_size=10), st.integers(0, 400))
def test_fastagi_request_reader_truncated(
    loop: asyncio.AbstractEventLoop, pairs: list[tuple[str, str]], cut: int
) -> None:
    block = "".join(f"agi_{k}: {v}\n" for k, v in pairs).encode("utf-8", "surrogateescape")
    targets.fastagi_headers(block[:cut], loop)
    targets.fastagi_headers(block + b"\n", loop)


def test_fastagi_request_reader_huge_header(loop: asyncio.AbstractEventLoop) -> None:
    targets.fastagi_headers(b"agi_request: " + b"A" * 100_000 + b"\n\n", loop)


@FUZZ
@given(
    st.lists(
        st.one_of(
            HOSTILE_TEXT,
            st.sampled_from(
                [
                    "HANGUP",
                    "200 result=-1",
                    "200 result=99999999999999999999",
                    "200 result=55296 (dtmf)",
                    "520-Invalid",
                    "100 Trying",
                ]
            ),
        ),
        max_size=8,
    )
)
def test_fastagi_answers_only_raise_agi_errors(
    loop: asyncio.AbstractEventLoop, lines: list[str]
) -> None:
    targets.fastagi_answer("\n".join(lines).encode("utf-8", "surrogateescape"), loop)


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\n",
        b"\n",
        b"9" * 5000 + b"\n",
        b"200 result=abc\n",
        b"A" * 20_000 + b"\n",
        b"200 result=1114112\n",
        b"200 result=55296 (dtmf) endpos=1\n",
    ],
)
def test_fastagi_answer_findings(loop: asyncio.AbstractEventLoop, answer: bytes) -> None:
    # found by this fuzzing: each raised ValueError out of AgiSession before the fix
    targets.fastagi_answer(answer * 5, loop)


# --------------------------------------------------------------------------- MQTT

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "cmd": st.sampled_from(["pause", "unpause", "login", "logout", "transfer", "x"]),
        "request_id": HOSTILE_TEXT,
        "transfer_id": HOSTILE_TEXT,
        "mode": st.sampled_from(["voice", "data", ""]),
        "caller": HOSTILE_TEXT,
        "summary": HOSTILE_TEXT,
        "called_at": st.sampled_from(
            [
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-14:00",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00",
                "nan",
            ]
        ),
        "operator_id": HOSTILE_TEXT,
        "location": JSON,
        "reason": JSON,
        "target": HOSTILE_TEXT,
    },
)


@FUZZ
@given(RAW)
def test_mqtt_payloads_garbage(data: bytes) -> None:
    targets.mqtt_payloads(data)


@FUZZ
@given(st.one_of(JSON, FIELDS))
def test_mqtt_payloads_json_shapes(value: object) -> None:
    import json  # noqa: PLC0415

    targets.mqtt_payloads(json.dumps(value).encode())


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"a":' * 5000,
        b"1" * 100_000,
        b'{"cmd": 1e999}',
        b"\xef\xbb\xbf{}",
        b'"\\ud800"',
        b"{" + b'"k":1,' * 5000 + b"}",
    ],
)
def test_mqtt_payloads_limits(payload: bytes) -> None:
    targets.mqtt_payloads(payload)

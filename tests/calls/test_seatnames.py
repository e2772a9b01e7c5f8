"""The endpoint → seat lookup the core gives the tracker (cti/calls/seatnames.py)."""

from __future__ import annotations

import pytest

from cti.calls.seatnames import channel_endpoint, endpoint_key, seat_namer

SEATS = {
    "PJSIP/6001": "1001",
    "Local/1002@seats": "1002",
    "PJSIP/desk@office-pbx": "1003",
    "SIP/6004": "1004",
}


@pytest.mark.parametrize(
    ("endpoint", "key"),
    [
        ("PJSIP/6001", "pjsip/6001"),
        ("PJSIP/1234@carrier", "pjsip/carrier"),
        ("Local/1001@seats", "local/1001@seats"),
        ("Local/1001@seats/n", "local/1001@seats"),
        ("SIP/6001/1234", "sip/6001"),
    ],
)
def test_endpoint_key(endpoint: str, key: str) -> None:
    assert endpoint_key(endpoint) == key


@pytest.mark.parametrize(
    ("channel", "key"),
    [
        ("PJSIP/6001-0000002a", "pjsip/6001"),
        ("Local/1001@seats-00000001;1", "local/1001@seats"),
        ("Local/1001@seats-00000001;2", "local/1001@seats"),
        ("SIP/trunk-00000001", "sip/trunk"),
        ("Message/ast_msg_queue", "message/ast_msg_queue"),
        ("weird", "weird"),
    ],
)
def test_channel_endpoint(channel: str, key: str) -> None:
    assert channel_endpoint(channel) == key


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        # the seat's phone is the seat
        ("PJSIP/6001-0000002a", "1001"),
        ("pjsip/6001-0000002A", "1001"),
        ("Local/1002@seats-0000000b;1", "1002"),
        ("PJSIP/office-pbx-00000003", "1003"),
        ("SIP/6004-00000001", "1004"),
        # no seat's endpoint: the channel's own name, as before
        ("PJSIP/6002-00000004", "6002"),
        ("PJSIP/carrier-00000009", "carrier"),
        ("Local/13800138000@cti-inbound-00000001;2", "13800138000"),
        ("Local/1001@seats-00000002;1", "1001"),  # another context, same digits
        ("", ""),
    ],
)
def test_seat_namer_names_a_seats_channel_by_the_seat(channel: str, name: str) -> None:
    assert seat_namer(SEATS)(channel) == name


def test_two_seats_on_one_endpoint_the_first_wins() -> None:
    assert seat_namer({"PJSIP/6001": "1001", "pjsip/6001": "1009"})("PJSIP/6001-01") == "1001"

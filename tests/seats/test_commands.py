"""Agent commands: every bad payload is a clear error, never an exception."""

from __future__ import annotations

import pytest

from cti.seats.commands import (
    CommandError,
    Login,
    NotReady,
    Ready,
    WrapupExtend,
    parse_seat_command,
)
from cti.seats.model import Reason


def test_valid_commands() -> None:
    assert parse_seat_command(b'{"cmd":"ready"}') == Ready(cmd="ready")
    login = parse_seat_command(b'{"cmd":"login","ready":true,"request_id":"r1"}')
    assert login == Login(cmd="login", ready=True, request_id="r1")
    nr = parse_seat_command(b'{"cmd":"not_ready","reason":"meal"}')
    assert isinstance(nr, NotReady)
    assert nr.reason_code is Reason.MEAL
    assert parse_seat_command(b'{"cmd":"wrapup_extend","seconds":30}') == WrapupExtend(
        cmd="wrapup_extend", seconds=30
    )


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"\xff\xfe", "bad_json", "not JSON"),
        (b"{", "bad_json", "not JSON"),
        (b"[1, 2]", "invalid_command", "(root): Input should be a valid dictionary"),
        (b'{"cmd": "sleep"}', "invalid_command", "does not match any of the expected tags"),
        (b'{"reason": "meal"}', "invalid_command", "Unable to extract tag using discriminator"),
        (b'{"cmd": "not_ready", "reason": "nap"}', "invalid_command", "reason: Input should be"),
        (b'{"cmd": "not_ready"}', "invalid_command", "reason: Field required"),
        (b'{"cmd": "ready", "seat": "1002"}', "invalid_command", "seat: Extra inputs"),
        (b'{"cmd": "wrapup_extend", "seconds": 99999}', "invalid_command", "seconds:"),
        (b'{"cmd": "login", "ready": "maybe"}', "invalid_command", "ready: Input should be"),
        (b'{"cmd":"ready","request_id":"' + b"x" * 70 + b'"}', "invalid_command", "request_id"),
        (b" " * 5000, "too_large", "over 4096 bytes"),
        # under the 4 KiB limit, yet json.loads raised RecursionError / ValueError (issue 16)
        (b"[" * 2000 + b"]" * 2000, "bad_json", "nested deeper than 32 levels"),
        (b'{"cmd": "wrapup_extend", "seconds": ' + b"9" * 4000 + b"}", "bad_json", "digits"),
        (b'{"cmd": "ready", "request_id": "\\ud800"}', "bad_json", "surrogate"),
    ],
)
def test_bad_commands_are_clear_errors(payload: bytes, code: str, fragment: str) -> None:
    err = parse_seat_command(payload)
    assert isinstance(err, CommandError)
    assert err.code == code
    assert fragment in err.message
    reply = err.reply()
    assert reply["ok"] is False
    assert reply["error"]["code"] == code


def test_request_id_is_echoed_in_errors() -> None:
    err = parse_seat_command(b'{"cmd":"not_ready","reason":"nap","request_id":"r-9"}')
    assert isinstance(err, CommandError)
    assert err.reply()["request_id"] == "r-9"

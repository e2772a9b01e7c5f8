"""cti.logs: phone-number masking and the rendered output."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from cti.logs import configure_logging, get_logger, mask_phone_numbers, mask_text
from cti.settings import LoggingSettings

if TYPE_CHECKING:
    from collections.abc import Iterator


def mask(**event: Any) -> dict[str, Any]:
    return dict(mask_phone_numbers(None, "info", event))


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


# --------------------------------------------------------------------------- masking


def test_mobile_number_in_text_is_masked() -> None:
    assert mask_text("13800138000") == "138****8000"
    assert mask(event="call from 13800138000 queued")["event"] == "call from 138****8000 queued"


def test_chinese_text_untouched_and_numbers_in_it_masked() -> None:
    assert mask(note="市民来电咨询公积金")["note"] == "市民来电咨询公积金"
    assert mask(note="来电13800138000咨询")["note"] == "来电138****8000咨询"


def test_uniqueids_untouched() -> None:
    out = mask(
        uniqueid="1732665600.42",
        linkedid="1732665600.41",
        other="1732665600.42",
        event="bridge 1732665600.42 with 1732665600.43",
    )
    assert out == {
        "uniqueid": "1732665600.42",
        "linkedid": "1732665600.41",
        "other": "1732665600.42",
        "event": "bridge 1732665600.42 with 1732665600.43",
    }


def test_service_numbers_untouched() -> None:
    for line in ("110", "12345", "12315", "12369"):
        assert mask(event=f"dialled {line}", callee=line, number=line) == {
            "event": f"dialled {line}",
            "callee": line,
            "number": line,
        }


def test_medium_numbers_keep_three_and_two() -> None:
    assert mask_text("7461234") == "746**34"
    assert mask_text("0746123456") == "074*****56"
    assert mask_text("tel 0746-12345678") == "tel 0746-123***78"


def test_country_code() -> None:
    assert mask_text("+8613800138000") == "+86138****8000"


def test_phone_fields_masked_even_when_short() -> None:
    assert mask(caller="123456")["caller"] == "****56"
    assert mask(ani="13800138000", dnis="12345") == {"ani": "138****8000", "dnis": "12345"}
    assert mask(caller=13800138000)["caller"] == "138****8000"
    assert mask(number=110)["number"] == 110  # not turned into a string when kept


def test_exempt_keys_untouched() -> None:
    event = {
        "call_id": "13800138000-1",
        "action_id": "12345678",
        "time": "1732665600",
        "timestamp": "1732665600",
        "pid": 1234567,
        "port": 5038,
        "seat": "8001234",
    }
    assert mask(**event) == event


def test_no_masking_inside_tokens() -> None:
    # Asterisk channel suffixes, hex ids, IPs, decimals: not phone numbers.
    for text in (
        "PJSIP/trunk-00000012",
        "Local/8001@seats-0000001a;1",
        "10.0.0.1:5038",
        "0.1234567891",
        "abc12345678",
    ):
        assert mask_text(text) == text


def test_nested_values_are_masked() -> None:
    out = mask(
        headers={"CallerIDNum": "13800138000", "Uniqueid": "1732665600.42"}, seq=["13900139000"]
    )
    assert out == {
        "headers": {"CallerIDNum": "138****8000", "Uniqueid": "1732665600.42"},
        "seq": ["139****9000"],
    }


def test_non_string_values_untouched() -> None:
    assert mask(count=12345678, ratio=0.5, ok=True) == {"count": 12345678, "ratio": 0.5, "ok": True}


# --------------------------------------------------------------------------- output


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_output_is_valid_json_with_readable_chinese() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=stream, cache_loggers=False)
    log = get_logger("cti.test")
    log.info("call_offered", caller="13800138000", line="12345", name="张三")
    raw = stream.getvalue()
    assert "张三" in raw  # ensure_ascii=False: no \\u5f20
    (line,) = lines(stream)
    assert line["event"] == "call_offered"
    assert line["caller"] == "138****8000"
    assert line["line"] == "12345"
    assert line["level"] == "info"
    assert line["logger"] == "cti.test"
    assert line["timestamp"].endswith("Z")


def test_auto_is_json_when_not_a_tty() -> None:
    stream = io.StringIO()  # isatty() is False
    configure_logging(LoggingSettings(format="auto"), stream=stream, cache_loggers=False)
    get_logger("cti.test").warning("ami_node_down", node="main")
    assert lines(stream)[0]["node"] == "main"


def test_console_format() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="console"), stream=stream, cache_loggers=False)
    get_logger("cti.test").info("call_offered", caller="13800138000")
    out = stream.getvalue()
    assert "call_offered" in out
    assert "138****8000" in out
    assert "\x1b[" not in out  # no colours when not a terminal


def test_level_filter_and_contextvars() -> None:
    stream = io.StringIO()
    configure_logging(
        LoggingSettings(level="warning", format="json"), stream=stream, cache_loggers=False
    )
    log = get_logger("cti.test")
    log.info("dropped")
    with structlog.contextvars.bound_contextvars(linkedid="1732665600.42"):
        log.warning("kept")
    (line,) = lines(stream)
    assert (line["event"], line["linkedid"]) == ("kept", "1732665600.42")


def test_masking_can_be_turned_off() -> None:
    stream = io.StringIO()
    configure_logging(
        LoggingSettings(format="json", mask_numbers=False), stream=stream, cache_loggers=False
    )
    get_logger("cti.test").info("x", caller="13800138000")
    assert lines(stream)[0]["caller"] == "13800138000"


def test_stdlib_logging_goes_through_the_same_renderer() -> None:
    stream = io.StringIO()
    configure_logging(
        LoggingSettings(level="debug", format="json"), stream=stream, cache_loggers=False
    )
    other = logging.getLogger("panoramisk.manager")
    other.info("chatter")  # below WARNING: not shown even at debug
    other.warning("connection lost to %s", "13800138000")
    (line,) = lines(stream)
    assert line["event"] == "connection lost to 138****8000"
    assert (line["logger"], line["level"]) == ("panoramisk.manager", "warning")


def test_exceptions_are_rendered_and_masked() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=stream, cache_loggers=False)
    try:
        raise ValueError("no route for 13800138000")  # noqa: TRY301
    except ValueError:
        get_logger("cti.test").exception("route_failed")
    (line,) = lines(stream)
    assert "ValueError: no route for 138****8000" in line["exception"]


def test_reconfigure_replaces_the_stdlib_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=first, cache_loggers=False)
    configure_logging(LoggingSettings(format="json"), stream=second, cache_loggers=False)
    logging.getLogger("aiomqtt").error("boom")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


# --------------------------------------------------------------------------- grouped numbers


def test_numbers_written_in_groups_are_masked() -> None:
    # the forms docs/dispatch110.md allows for a caller (issue 16 item 5)
    assert mask_text("138 0013 8000") == "138 **** 8000"
    assert mask_text("138-0013-8000") == "138-****-8000"
    assert mask_text("+86 138 0013 8000") == "+86 138 **** 8000"
    assert mask_text("400-810-1234") == "400-***-**34"
    assert mask_text("0746 1234 5678") == "074* **** 5678"
    assert mask(note="来电138 0013 8000咨询")["note"] == "来电138 **** 8000咨询"
    # next to an id or a count, the number is still found
    assert mask_text("138 0013 8000 1733212345.12") == "138 **** 8000 1733212345.12"
    assert mask_text("from 138-0013-8000 2 times") == "from 138-****-8000 2 times"


def test_grouped_numbers_in_any_field_and_in_phone_fields() -> None:
    assert mask(summary="回电 138 0013 8000", caller="138-0013-8000") == {
        "summary": "回电 138 **** 8000",
        "caller": "138-****-8000",
    }
    assert mask(caller="12 34 56")["caller"] == "** ** 56"
    assert mask(caller="123 45")["caller"] == "123 45"  # 5 digits: a service line


def test_ids_dates_and_tickets_are_not_grouped_numbers() -> None:
    for text in (
        "12345-20261127-000042",  # a ticket number
        "ticket 12345-20261127-000042 opened",
        "2026-11-27 10:00:00",
        "2026-11-27T10:00:00+08:00",
        "J2026112700042",  # 110's incident number
        "1733212345.12 1733212345.13",
        "SIP/1001-00000012",
        "12 345",
        "queue 3 of 12",
    ):
        assert mask_text(text) == text, text


def test_other_values_are_masked_in_their_repr() -> None:
    out = mask(payload=b'{"caller": "13800138000"}', seats={"1001"}, n=None)
    assert out == {"payload": 'b\'{"caller": "138****8000"}\'', "seats": {"1001"}, "n": None}

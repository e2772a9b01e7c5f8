"""cti.jsonin: outside JSON is parsed, or refused with JsonRefused — never anything else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.jsonin import MAX_DEPTH, MAX_NUMBER_DIGITS, JsonRefused, load_json, nesting_depth

LIMIT = 16 * 1024


def refused(data: bytes | str, **limits: Any) -> JsonRefused:
    with pytest.raises(JsonRefused) as info:
        load_json(data, **{"max_bytes": LIMIT, **limits})
    return info.value


def test_ordinary_documents_parse_like_json_loads() -> None:
    doc = {
        "transfer_id": "J2026112700042",
        "summary": '楼下[夜间]{装修}噪音 "引号" \\',
        "location": {"lat": 28.19, "lon": 112.97},
        "n": -12,
        "flags": [True, False, None],
        "emoji": "😀",
    }
    raw = json.dumps(doc, ensure_ascii=False).encode()
    assert load_json(raw, max_bytes=LIMIT) == doc
    assert load_json(json.dumps(doc), max_bytes=LIMIT) == doc  # \u escapes, surrogate pairs


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper than 32"),
        (b"[" * 5000, "nested deeper than 32"),  # unbalanced: refused before the parser
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
        (b'{"lat":' + b"9" * 5000 + b',"lon":1}', "more than 40 digits"),
        (b"-" + b"1" * 41, "more than 40 digits"),
        (b"0." + b"1" * 60, "more than 40 digits"),
        (b"1e999", "out of range"),
        (b"[NaN]", "NaN is not JSON"),
        (b"-Infinity", "Infinity is not JSON"),
        (b"\xff{", "not UTF-8"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),  # json.loads(bytes) would take it as UTF-16
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'["\\udc00x"]', "lone surrogate"),
        (b"", "not JSON"),
        (b'{"transfer_id": ', "not JSON"),
        (b"\xef\xbb\xbf{}", "not JSON"),  # a BOM
    ],
)
def test_hostile_documents_are_bad_json(payload: bytes, fragment: str) -> None:
    err = refused(payload)
    assert err.code == "bad_json"
    assert fragment in err.message


def test_size_is_checked_first() -> None:
    err = refused(b" " * (LIMIT + 1))
    assert (err.code, err.message) == ("too_large", f"over {LIMIT} bytes")
    assert load_json(b" " * (LIMIT - 2) + b"{}", max_bytes=LIMIT) == {}


def test_limits_are_inclusive_and_configurable() -> None:
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, max_bytes=LIMIT) is not None
    assert refused(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)).code == "bad_json"
    assert load_json(b"9" * MAX_NUMBER_DIGITS, max_bytes=LIMIT) == int("9" * MAX_NUMBER_DIGITS)
    assert refused(b"[[[]]]", max_depth=2).code == "bad_json"
    assert refused(b"123", max_digits=2).code == "bad_json"


def test_brackets_in_strings_are_text() -> None:
    deep_text = json.dumps({"summary": "[" * 5000 + "{" * 5000, "q": '\\"[[['})
    assert load_json(deep_text, max_bytes=LIMIT * 2)["summary"].startswith("[[[")
    assert nesting_depth(deep_text.encode(), limit=MAX_DEPTH) == 1


def test_the_pre_scan_is_linear_on_escaped_quotes() -> None:
    # an unterminated string full of \" : a naive string regex retries from each quote
    payload = b'"' + b'\\"' * 8000
    started = time.perf_counter()
    assert refused(payload, max_bytes=LIMIT * 2).code == "bad_json"
    assert time.perf_counter() - started < 0.2


def test_a_refusal_is_a_value_error() -> None:
    # callers that caught ValueError around json.loads keep working
    assert issubclass(JsonRefused, ValueError)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_round_trips(value: Any) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert load_json(raw, max_bytes=1 << 20) == value
    assert load_json(json.dumps(value), max_bytes=1 << 20) == value  # \u escapes


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(raw: bytes) -> None:
    try:
        load_json(raw, max_bytes=200)
    except JsonRefused as exc:
        code: str = exc.code
    else:
        code = "parsed"
    assert code in {"parsed", "bad_json", "too_large"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", ":", "1", "9" * 50, "a", " "]),
        max_size=200,
    )
)
def test_any_bracket_soup_parses_or_is_refused(tokens: list[str]) -> None:
    try:
        load_json("".join(tokens), max_bytes=LIMIT)
    except JsonRefused as exc:
        code: str = exc.code
    else:
        code = "parsed"
    assert code in {"parsed", "bad_json"}

"""The published pop schema is current, and it accepts what the daemon publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cti.adapters.pops import PopMessage, pop_json_schema

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "pop.schema.json"


def test_the_committed_schema_is_generated_from_the_models() -> None:
    expected = json.dumps(pop_json_schema(), indent=2, ensure_ascii=False) + "\n"
    assert SCHEMA.read_text(encoding="utf-8") == expected, (
        "regenerate docs/schemas/pop.schema.json (see tests/test_pop_schema.py)"
    )


def test_a_pop_validates_and_a_broken_one_does_not() -> None:
    pop = {
        "schema_version": 1,
        "pop_id": "c1:1001:1:offer",
        "type": "offer",
        "seat": "1001",
        "at": 1.0,
        "ticket": "pending",
        "call": {"call_id": "c1", "caller_name": "王五"},
        "history": {"calls": [], "tickets": [], "repeat_caller": False, "complete": True},
        "future_field": "ignored by receivers",
    }
    assert PopMessage.model_validate(pop).call.caller_name == "王五"
    with pytest.raises(ValidationError):
        PopMessage.model_validate({**pop, "type": "ringing"})

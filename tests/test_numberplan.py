"""cti.numberplan: the sample plan is valid; every cross-check names what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from cti.numberplan import EndpointTech, LineMode, NumberPlan, endpoint_tech
from cti.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def plan(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "skills": [{"name": "general"}, {"name": "market"}],
        "lines": [
            {"number": "12345", "name": "12345"},
            {"number": "12315", "name": "12315", "mode": "dedicated", "skill": "market"},
        ],
        "seats": [
            {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5}},
            {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"general": 3, "market": 2}},
        ],
    }
    base.update(over)
    return base


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        NumberPlan.model_validate(data)
    return str(info.value)


def test_shipped_sample_plan() -> None:
    numberplan = load_settings(REPO / "config" / "cti.yaml", env={}).numberplan
    numbers = {line.number for line in numberplan.lines}
    assert {"12345", "12315", "12369", "12333", "12366", "88001234", "12345110"} <= numbers
    tax = numberplan.line("12366")
    assert tax is not None
    assert tax.mode is LineMode.SUBCENTRE
    assert tax.transfer_to == "12366"
    line110 = numberplan.line("12345110")
    assert line110 is not None
    assert line110.dispatch110
    assert line110.priority_class == "emergency-transfer"
    assert all(seat.endpoint.startswith("Local/") for seat in numberplan.seats)
    assert [step.after_s for step in numberplan.queue.overflow] == [30, 90]


def test_default_plan_is_valid_and_empty() -> None:
    default = NumberPlan()
    assert default.lines == ()
    assert [c.name for c in default.priority_classes] == ["emergency-transfer", "repeat", "normal"]


def test_minimal_plan_valid() -> None:
    p = NumberPlan.model_validate(plan())
    assert p.seats[1].endpoint == "PJSIP/1002"


def test_number_mapped_twice() -> None:
    lines = [{"number": "12345", "name": "a"}, {"number": "12345", "name": "b"}]
    assert "number '12345' mapped twice" in error_of(plan(lines=lines))


def test_seat_listed_twice() -> None:
    seat = {"id": "1001", "endpoint": "PJSIP/1001", "skills": {"general": 1, "market": 1}}
    assert "seat id '1001' listed twice" in error_of(plan(seats=[seat, seat]))


def test_line_skill_no_seat_has() -> None:
    seats = [{"id": "1001", "endpoint": "PJSIP/1001", "skills": {"general": 1}}]
    message = error_of(plan(seats=seats))
    assert "lines.1 (12315): skill 'market' is a skill no seat has" in message


def test_unknown_skill_on_seat_and_line() -> None:
    seats = [{"id": "1", "endpoint": "PJSIP/1", "skills": {"general": 1, "market": 1, "mrket": 2}}]
    assert "seats.0 (1): unknown skill 'mrket'" in error_of(plan(seats=seats))
    lines = [{"number": "12333", "name": "x", "mode": "dedicated", "skill": "hr"}]
    assert "unknown skill 'hr'" in error_of(plan(lines=lines))


@pytest.mark.parametrize("endpoint", ["SKINNY/1001", "1001", "PJSIP/", "Zap/1"])
def test_unknown_endpoint_tech(endpoint: str) -> None:
    seats = [{"id": "1", "endpoint": endpoint, "skills": {"general": 1, "market": 1}}]
    message = error_of(plan(seats=seats))
    assert "endpoint" in message


def test_endpoint_tech_case_insensitive_canonical() -> None:
    assert endpoint_tech("local/1001@seats") is EndpointTech.LOCAL
    seats = [{"id": "1", "endpoint": "pjsip/1", "skills": {"general": 1, "market": 1}}]
    assert NumberPlan.model_validate(plan(seats=seats)).seats[0].endpoint == "PJSIP/1"


def test_overflow_steps_must_increase() -> None:
    queue = {
        "overflow": [
            {"name": "a", "after_s": 30, "target": {"skills": ["general"]}},
            {"name": "b", "after_s": 30, "target": {"skills": ["general"]}},
        ]
    }
    assert "after_s 30 must be greater" in error_of(plan(queue=queue))


def test_overflow_target_unknown_team_and_skill() -> None:
    queue = {
        "overflow": [
            {"name": "a", "after_s": 30, "target": {"teams": ["county-x"]}},
            {"name": "b", "after_s": 60, "target": {"skills": ["nope"]}},
        ]
    }
    message = error_of(plan(queue=queue))
    assert "team 'county-x' has no seat" in message
    assert "unknown skill 'nope'" in message


def test_mode_fields() -> None:
    assert "needs transfer_to" in error_of(
        plan(lines=[{"number": "12366", "name": "t", "mode": "subcentre"}])
    )
    assert "needs the skill" in error_of(
        plan(lines=[{"number": "12366", "name": "t", "mode": "dedicated"}])
    )
    assert "only apply to mode subcentre" in error_of(
        plan(lines=[{"number": "12366", "name": "t", "transfer_to": "12366"}])
    )


def test_unknown_class_trunk_hours() -> None:
    lines = [
        {"number": "12345", "name": "x", "priority_class": "vip", "hours": "office"},
        {
            "number": "12366",
            "name": "t",
            "mode": "subcentre",
            "transfer_to": "12366",
            "trunk": "ct",
        },
        {"number": "12315", "name": "m", "mode": "dedicated", "skill": "market"},
    ]
    message = error_of(plan(lines=lines))
    assert "unknown priority_class 'vip'" in message
    assert "unknown hours 'office'" in message
    assert "unknown trunk 'ct'" in message


def test_extra_key_forbidden() -> None:
    assert "Extra inputs are not permitted" in error_of(plan(lnes=[]))


def test_business_hours() -> None:
    p = NumberPlan.model_validate(
        plan(
            hours=[
                {
                    "name": "office",
                    "rules": [
                        {
                            "days": ["mon", "tue", "wed", "thu", "fri"],
                            "start": "08:30",
                            "end": "17:30",
                        }
                    ],
                    "closed_dates": ["2025-10-01"],
                }
            ]
        )
    )
    office = p.hours[0]
    # 2025-09-30 (Tuesday) 09:00 and 18:00 Asia/Shanghai; 2025-10-01 09:00 (holiday)
    assert office.is_open(1759194000.0)
    assert not office.is_open(1759226400.0)
    assert not office.is_open(1759280400.0)
    assert "start 18:00 must be before end 08:00" in error_of(
        plan(hours=[{"name": "x", "rules": [{"days": ["mon"], "start": "18:00", "end": "08:00"}]}])
    )

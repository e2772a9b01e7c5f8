"""Number plans for the dispatcher tests."""

from __future__ import annotations

from typing import Any

from cti.numberplan import NumberPlan


def make_plan(seats: list[dict[str, Any]] | None = None, **queue: Any) -> NumberPlan:
    if seats is None:
        seats = [
            {"id": "1001", "endpoint": "Local/1001@seats", "skills": {"general": 5, "market": 3}},
            {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"general": 5}},
            {
                "id": "2001",
                "endpoint": "Local/2001@seats",
                "skills": {"general": 2},
                "team": "county-a",
            },
        ]
    q: dict[str, Any] = {
        "ring_timeout_s": 15,
        "wrapup_s": 30,
        "overflow": [{"name": "any-general", "after_s": 30, "target": {"skills": ["general"]}}],
    }
    q.update(queue)
    skills = sorted({skill for seat in seats for skill in seat["skills"]})
    lines: list[dict[str, Any]] = [
        {"number": "12345", "name": "12345"},
        {
            "number": "12366",
            "name": "12366",
            "mode": "subcentre",
            "transfer_to": "12366",
            "trunk": "ct",
        },
        {
            "number": "12345110",
            "name": "110",
            "dispatch110": True,
            "priority_class": "emergency-transfer",
        },
    ]
    if "market" in skills:
        lines.append({"number": "12315", "name": "12315", "mode": "dedicated", "skill": "market"})
    return NumberPlan.model_validate(
        {
            "skills": [{"name": s} for s in skills],
            "trunks": [{"name": "ct", "endpoint": "PJSIP/carrier"}],
            "lines": lines,
            "seats": seats,
            "queue": q,
        }
    )

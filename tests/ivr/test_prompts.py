"""Which configured prompts Asterisk lacks: the bookkeeping of a check (no Asterisk)."""

from __future__ import annotations

from pathlib import Path

from cti.ivr.prompts import PromptCheck, configured_prompts
from cti.settings import load_settings

REPO = Path(__file__).resolve().parent.parent.parent
SETTINGS = "  Data directory:              /usr/share/asterisk\n  Default language:            zh\n"


def test_every_prompt_of_the_sample_is_listed() -> None:
    settings = load_settings(REPO / "config" / "cti.yaml", env={"CTI_AMI_SECRET": "x"})
    prompts = configured_prompts(settings)
    assert prompts["ivr.survey.prompt"] == "beep"
    assert prompts["ivr.progress_query.status_prompts.办理"] == "vm-review"
    assert prompts["dialplan.blocked_prompt"] == "vm-goodbye"
    assert "ivr.callback_offer.key" not in prompts  # a key, not a sound


def test_a_check_reports_the_missing_ones_by_setting() -> None:
    prompts = {"a.one": "beep", "b.two": "beep", "c.three": "/opt/city/greeting", "d": "x"}
    check = PromptCheck(prompts, SETTINGS, "ctipromptsabc")
    assert sorted(check.by_base) == [
        "/opt/city/greeting",
        "/usr/share/asterisk/sounds/zh/beep",
        "/usr/share/asterisk/sounds/zh/x",
    ]
    assert check.originate()["Variable"].startswith("CTI_PROMPT_FILES=")
    check.feed({"UserEvent": "CtiPromptCheck", "Base": "/usr/share/asterisk/sounds/zh/beep",
                "Found": "0100000"})  # fmt: skip
    check.feed({"UserEvent": "CtiPromptCheck", "Base": "/opt/city/greeting", "Found": "0000000"})
    assert not check.done.is_set()
    check.feed({"UserEvent": "CtiPromptCheck", "Base": "/usr/share/asterisk/sounds/zh/x",
                "Found": "0000000"})  # fmt: skip
    assert check.done.is_set()
    assert check.missing() == {"c.three": "/opt/city/greeting", "d": "x"}

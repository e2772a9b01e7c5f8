"""Which configured prompts Asterisk lacks: the bookkeeping of a check (no Asterisk)."""

from __future__ import annotations

from pathlib import Path

from cti.adapters.prompt_check import PromptCheck, configured_prompts
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
    assert sorted(check.by_base) == ["/opt/city/greeting", "beep", "x"]
    [action] = check.originates()
    assert action["Variable"] == (
        "CTI_PROMPT_DIR=/usr/share/asterisk/sounds/zh,CTI_PROMPT_FILES=beep^/opt/city/greeting^x"
    )
    check.feed({"UserEvent": "CtiPromptCheck", "Base": "beep", "Found": "0100000"})
    check.feed({"UserEvent": "CtiPromptCheck", "Base": "/opt/city/greeting", "Found": "0000000"})
    assert not check.done.is_set()
    check.feed({"UserEvent": "CtiPromptCheck", "Base": "x", "Found": "0000000"})
    assert check.done.is_set()
    assert check.missing() == {"c.three": "/opt/city/greeting", "d": "x"}


def test_a_long_list_goes_in_chunks_an_ami_line_can_carry() -> None:
    prompts = {f"p{i}": f"hotline/prompt-number-{i:03d}" for i in range(100)}
    actions = PromptCheck(prompts, SETTINGS, "ctipromptsx").originates()
    assert len(actions) > 1
    assert all(len(a["Variable"]) < 1000 for a in actions)
    assert len({a["ChannelId"] for a in actions}) == len(actions)
    names = "^".join(a["Variable"].partition("CTI_PROMPT_FILES=")[2] for a in actions)
    assert names.split("^") == list(prompts.values())


def test_the_sample_has_no_key_among_its_prompts() -> None:
    settings = load_settings(REPO / "config" / "cti.yaml", env={"CTI_AMI_SECRET": "x"})
    assert not [p for p in configured_prompts(settings) if p.endswith("key")]

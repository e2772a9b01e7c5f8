"""IVR flow decisions, with a scripted fake channel — no Asterisk."""

from __future__ import annotations

from collections.abc import Mapping

from cti.ivr.flows import (
    announce,
    announcement,
    offer_callback,
    progress_query,
    rating_for,
    survey,
    ticket_number_from_digits,
)
from cti.ivr.session import Recorded
from cti.settings import (
    AnnounceSettings,
    CallbackOfferSettings,
    ProgressQuerySettings,
    SurveySettings,
)


class FakeAgi:
    """Answers get_digits from a script; records what was played."""

    def __init__(self, keys: list[str | None]) -> None:
        self.keys = list(keys)
        self.played: list[str] = []
        self.headers: Mapping[str, str] = {}
        self.peer = "127.0.0.1"

    async def answer(self) -> None:
        self.played.append("<answer>")

    async def stream(self, prompt: str, escape: str = "") -> str | None:
        self.played.append(prompt)
        return None

    async def get_digits(self, prompt: str, *, timeout_s: float, max_digits: int) -> str | None:
        self.played.append(prompt)
        return self.keys.pop(0) if self.keys else None

    async def say_digits(self, digits: str) -> None:
        self.played.append(f"<digits {digits}>")

    async def say_number(self, number: int) -> None:
        self.played.append(f"<number {number}>")

    async def get_variable(self, name: str) -> str | None:
        return None

    async def set_variable(self, name: str, value: str) -> None:
        self.played.append(f"<set {name}={value}>")

    async def record_file(
        self,
        path: str,
        fmt: str,
        *,
        escape_digits: str,
        timeout_ms: int,
        silence_s: int = 0,
        beep: bool = True,
    ) -> Recorded:
        self.played.append(f"<record {path}.{fmt}>")
        return Recorded(ended="timeout", digit=None, samples=0)


SURVEY = SurveySettings()


def test_rating_for_keys_on_and_off_the_scale() -> None:
    r = rating_for("4", SURVEY)
    assert r is not None
    assert (r.key, r.label, r.unsatisfied) == (4, "不满意", True)
    assert rating_for("1", SURVEY) is not None
    for bad in (None, "", "5", "0", "12", "#", "a"):
        assert rating_for(bad, SURVEY) is None


async def test_survey_takes_a_key_and_thanks() -> None:
    agi = FakeAgi(["2"])
    rating = await survey(agi, SURVEY)
    assert rating is not None
    assert (rating.label, rating.unsatisfied) == ("满意", False)
    assert agi.played == ["beep", "auth-thankyou"]


async def test_survey_retries_a_wrong_key_then_gives_up() -> None:
    agi = FakeAgi(["9", "3"])
    rating = await survey(agi, SURVEY)
    assert rating is not None
    assert rating.label == "基本满意"
    assert agi.played == ["beep", "pbx-invalid", "beep", "auth-thankyou"]
    silent = FakeAgi([None, None])
    assert await survey(silent, SURVEY) is None
    assert silent.played == ["beep", "pbx-invalid", "beep"]  # no thanks, no third ask


def test_ticket_numbers_typed_on_a_keypad() -> None:
    assert ticket_number_from_digits("1234520261127000042", prefix="12345") == (
        "12345-20261127-000042"
    )
    assert ticket_number_from_digits("778899", prefix="12345") == "778899"  # the city's own
    assert ticket_number_from_digits("", prefix="12345") is None
    assert ticket_number_from_digits("12a", prefix="12345") is None


async def test_progress_query_reads_the_status_after_a_miss() -> None:
    asked: list[str] = []

    async def lookup(number: str) -> str | None:
        asked.append(number)
        return "办理" if number == "12345-20261127-000042" else None

    agi = FakeAgi(["999", "1234520261127000042"])
    cfg = ProgressQuerySettings()
    outcome = await progress_query(agi, cfg, lookup, prefix="12345")
    assert (outcome.number, outcome.status) == ("12345-20261127-000042", "办理")
    assert asked == ["999", "12345-20261127-000042"]
    assert agi.played == [
        "<answer>",
        "vm-enter-num-to-call",
        "vm-nonumber",
        "vm-enter-num-to-call",
        "vm-review",  # 办理
        "vm-goodbye",
    ]


async def test_progress_query_gives_up_after_the_attempts() -> None:
    async def lookup(number: str) -> str | None:
        return None

    agi = FakeAgi([None, None, None])
    outcome = await progress_query(agi, ProgressQuerySettings(), lookup, prefix="12345")
    assert outcome.status is None
    assert agi.played[-1] == "vm-goodbye"
    assert agi.played.count("vm-enter-num-to-call") == 3


def test_what_a_waiting_caller_hears() -> None:
    cfg = AnnounceSettings()
    assert announcement(None, 120.0, cfg) == []  # not waiting (being offered): nothing
    assert announcement(1, None, cfg) == [("play", "queue-youarenext"), ("play", "queue-thankyou")]
    assert announcement(4, 150.0, cfg) == [
        ("play", "queue-thereare"),
        ("number", 3),
        ("play", "queue-callswaiting"),
        ("play", "queue-holdtime"),
        ("number", 3),  # 2.5 minutes, rounded up
        ("play", "queue-minutes"),
        ("play", "queue-thankyou"),
    ]
    assert ("play", "queue-less-than") in announcement(2, 20.0, cfg)
    assert ("play", "queue-holdtime") not in announcement(2, 3600.0, cfg)  # too long to promise


async def test_announce_plays_the_steps() -> None:
    agi = FakeAgi([])
    await announce(agi, announcement(3, 90.0, AnnounceSettings()))
    assert agi.played == [
        "queue-thereare",
        "<number 2>",
        "queue-callswaiting",
        "queue-holdtime",
        "<number 2>",
        "queue-minutes",
        "queue-thankyou",
    ]


async def test_the_offer_takes_the_callback_or_the_message_key() -> None:
    cfg = CallbackOfferSettings(enabled=True, message_key="2")
    assert await offer_callback(FakeAgi(["1"]), cfg) == "callback"
    assert await offer_callback(FakeAgi(["2"]), cfg) == "message"
    assert await offer_callback(FakeAgi(["9"]), cfg) is None
    assert await offer_callback(FakeAgi([None]), cfg) is None
    assert await offer_callback(FakeAgi(["2"]), CallbackOfferSettings(enabled=True)) is None

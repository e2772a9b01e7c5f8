"""The log scan (tests/logscan.py) finds what it must, and fails the run on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import logscan
from tests.real.logcapture import LOG_DIR_ENV, configured_secrets, note_secrets

NUMBERS = frozenset({"13800000871"})
SECRET = "p-0123456789abcdef0123456789abcdef"


def line(**kw: object) -> str:
    return json.dumps({"event": "x", "level": "info", **kw}, ensure_ascii=False)


@pytest.mark.parametrize(
    "text",
    [
        line(caller="13912345678"),  # a phone key, unmasked
        line(error="来电13912345678 failed"),  # a number in free text
        "Traceback: caller 13912345678",  # not JSON
        line(call_id="13800000871"),  # an exempt key, but a number the tests use
        line(detail=f"Bearer {SECRET}"),  # a secret
    ],
)
def test_a_leaked_line_is_found(text: str) -> None:
    assert logscan.scan_line(text, NUMBERS, [SECRET])


@pytest.mark.parametrize(
    "text",
    [
        line(caller="139****5678", linkedid="1732665600.42"),
        line(error="来电139****5678 failed", ticket="12345-20261127-000042"),
        line(caller="110", line="12345", transfer_id="J0123456789"),
        line(caller="+86138****8000", port=45738),
        "plain text without numbers",
    ],
)
def test_a_masked_line_passes(text: str) -> None:
    assert logscan.scan_line(text, NUMBERS, [SECRET]) == []


def test_the_scan_fails_on_a_leaked_line_and_passes_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "test_x-1.log"
    log.with_suffix(".secrets").write_text(json.dumps([SECRET]), encoding="utf-8")
    log.write_text(line(caller="138****0871") + "\n", encoding="utf-8")
    assert logscan.main([str(tmp_path)]) == 0
    # one leaked line: the whole scan fails, and says where
    with log.open("a", encoding="utf-8") as f:
        f.write(line(event="http_request", auth=f"Bearer {SECRET}") + "\n")
    assert logscan.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "test_x-1.log:2: secret" in err
    assert SECRET not in err
    assert "FAILED: 1 finding(s)" in err


def test_an_empty_scan_fails(tmp_path: Path) -> None:
    assert logscan.main([str(tmp_path)]) == 1


def test_the_tests_numbers_are_collected() -> None:
    numbers = logscan.numbers_in_tests()
    assert "13800000871" in numbers
    assert len(numbers) > 20


def test_secrets_are_taken_from_the_config_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "cti.yaml"
    cfg.write_text(
        "mqtt: {password: mqtt-pass-1}\nhttp:\n  tokens: [{name: a, token: tok-123456789}]\n",
        encoding="utf-8",
    )
    got = configured_secrets(cfg, {"CTI_AMI_SECRET": "ami-sec-1", "PATH": "/bin"})
    assert got == {"mqtt-pass-1", "tok-123456789", "ami-sec-1"}


def test_a_secret_noted_after_the_start_is_scanned_for_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token a reload brought in is not in the daemon's start-time `.secrets`: the test
    notes it (note_secrets), and the scan looks for it in every log of the run."""
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    log = tmp_path / "test_x-1.log"
    log.with_suffix(".secrets").write_text("[]", encoding="utf-8")
    cfg = tmp_path / "cti.yaml"
    cfg.write_text("http:\n  tokens: [{name: a, token: reloaded-tok-1}]\n", encoding="utf-8")
    note_secrets("pasted-password-1", config=cfg)
    log.write_text(line(event="config_reloaded") + "\n", encoding="utf-8")
    assert logscan.main([str(tmp_path)]) == 0
    for leak in ("reloaded-tok-1", "pasted-password-1"):
        log.write_text(line(event="config_reload_refused", error=leak) + "\n", encoding="utf-8")
        assert logscan.main([str(tmp_path)]) == 1, leak

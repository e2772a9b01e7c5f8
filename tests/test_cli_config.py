"""`cti check-config`, `cti config-schema`, and config handling of `cti run`/`record`."""

from __future__ import annotations

import json
import logging
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from cti import cli

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_CONFIG = "config/cti.yaml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("CTI_"):
            monkeypatch.delenv(name)
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cti.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_check_config_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ami:
          nodes:
            - {name: main, username: cti, secret: s}
            - {name: pbx-2, host: 10.0.0.2, port: 5039, username: cti, secret: s}
        """,
    )
    assert cli.main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out == (
        f"OK: {path}: 2 Asterisk node(s): main@127.0.0.1:5038, pbx-2@10.0.0.2:5039\n"
    )
    assert out.err == ""


def test_check_config_shipped_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cli.__file__.rsplit("/cti/", 1)[0])
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {REPO_CONFIG}: 1 Asterisk node(s): main@")


def test_check_config_uses_cti_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write(tmp_path, "ami:\n  nodes:\n    - {name: main, username: cti}\n")
    monkeypatch.setenv("CTI_CONFIG", str(path))
    monkeypatch.setenv("CTI_AMI_SECRET", "from-env")
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {path}: ")


def test_check_config_reports_every_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Acceptance: a typo'd key, a wrong type and a missing secret, all reported at once."""
    path = write(
        tmp_path,
        """\
        # hotline-cti
        ami:
          nodes:
            - name: main
              hots: 127.0.0.1
              port: "abc"
              username: cti
        """,
    )
    assert cli.main(["check-config", "-c", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    errors = out.err.splitlines()
    assert len(errors) == 3, errors
    assert all(line.startswith("config error: ") for line in errors)
    hots, port, secret = sorted(errors, key=lambda line: ("hots" not in line, "port" not in line))
    assert hots.startswith("config error: ami.nodes.0.hots: Extra inputs are not permitted")
    assert "did you mean 'host'" in hots
    assert hots.endswith("(line 5)")
    assert port.startswith("config error: ami.nodes.0.port: Input should be a valid integer")
    assert port.endswith("(line 6)")
    assert secret.startswith("config error: ami.nodes.0.secret: Field required")
    assert "CTI_AMI_SECRET" in secret
    assert secret.endswith("(line 4)")


def test_check_config_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert cli.main(["check-config", "-c", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"config error: {path}: file not found")


def test_check_config_yaml_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "ami:\n  nodes: [\n")
    assert cli.main(["check-config", "-c", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "YAML syntax error" in line
    assert line.endswith("(line 3)")


def test_config_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "AmiNode" in schema["$defs"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cti ")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["record"],  # -o is required
        ["record", "-o", "x.jsonl", "--duration", "-1"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cli.main(argv) == 2
    assert "usage: cti" in capsys.readouterr().err


def test_run_with_bad_config_exits_2_before_starting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "ami:\n  nodes:\n    - {name: main, username: cti}\n")
    assert cli.main(["run", "-c", str(path)]) == 2
    assert capsys.readouterr().err.startswith("config error: ami.nodes.0.secret: Field required")


def test_record_with_unknown_node_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "ami:\n  nodes:\n    - {name: main, username: cti, secret: s}\n")
    argv = ["record", "-c", str(path), "-o", str(tmp_path / "t.jsonl"), "--node", "mian"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "config error: --node 'mian'" in err
    assert "main" in err


def test_replay_prints_one_json_object_per_call(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = Path(__file__).parent / "fixtures" / "ami" / "multi" / "two_calls.jsonl"
    assert cli.main(["replay", str(fixture)]) == 0
    calls = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(calls) == 2
    assert {c["outcome"] for c in calls} == {"answered"}


def test_replay_of_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", "/nonexistent/trace.jsonl"]) == 2
    assert "cannot read" in capsys.readouterr().err

"""Hostile configuration files through the real CLI (a `python -m cti` process): an alias
bomb, absurd nesting, absurd numbers are refused in well under a second with a
`config error:` line naming the problem and exit 2 — never a traceback and exit 1
(issue 16, item 8). A normal configuration still loads afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cti.settings.yamlfile import MAX_YAML_DEPTH, MAX_YAML_NODES
from tests.conftest import PROJECT

NODE = "ami:\n  nodes:\n    - {name: main, username: cti, secret: s, port: PORT}\n"


def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 9**9 strings once expanded (under 400 B)."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
        prev = name
    return text


def cti(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cti", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=PROJECT,
        check=False,
    )
    return done, time.monotonic() - started


HOSTILE = {
    "billion_laughs": (billion_laughs(), "aliases (*name) are expanded"),
    "alias_bomb_under_a_real_field": (
        billion_laughs() + "numberplan: {blacklist: *i}\n",
        "aliases (*name) are expanded",
    ),
    "recursive_alias": ("ami: &x {nodes: [*x]}\n", "recursive alias"),
    "deep_flow_sequence": ("ami: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    "deep_flow_mapping": ("ami: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than"),
    "deep_block_mapping": (
        "".join(f"{' ' * i}k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n",
        "nested more than",
    ),
    "port_of_5000_digits": (NODE.replace("PORT", "9" * 5000), "a number of 5000 digits"),
    "quoted_port_of_5000_digits": (NODE.replace("PORT", f"'{'9' * 5000}'"), "ami.nodes.0.port"),
    "hex_port_of_5000_digits": (NODE.replace("PORT", "0x" + "f" * 5000), "digits"),
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_config_is_refused_fast_and_cleanly(
    tmp_path: Path, case: str, command: str
) -> None:
    text, reason = HOSTILE[case]
    assert len(billion_laughs()) < 409  # the bomb: a few hundred bytes
    path = tmp_path / "cti.yaml"
    path.write_text(text, encoding="utf-8")
    done, seconds = cti(command, "-c", str(path))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines, "no error printed"
    assert all(line.startswith("config error: ") for line in lines), lines
    assert reason in done.stderr
    # a Python start-up is ~0.2 s of this; the refusal itself is milliseconds
    assert seconds < 1.5, f"{case}: {seconds:.2f} s"


def test_limits_leave_room_for_a_real_configuration(tmp_path: Path) -> None:
    """Aliases and merges stay usable; a big blacklist (thousands of entries) and a deep but
    sane nesting load fine."""
    numbers = "\n".join(f"      - {{number: '1380013{i:04d}'}}" for i in range(5000))
    text = f"""\
defaults: &node {{username: cti, secret: s, port: 5038}}
ami:
  nodes:
    - {{<<: *node, name: main}}
    - {{<<: *node, name: pbx-2, host: 10.0.0.2}}
numberplan:
  blacklist:
{numbers}
"""
    path = tmp_path / "cti.yaml"
    path.write_text(text, encoding="utf-8")
    done, _ = cti("check-config", "-c", str(path))
    # the unknown top-level key `defaults` is the only complaint: the rest was read
    assert "aliases" not in done.stderr
    assert "nested" not in done.stderr
    assert done.stderr.count("config error:") == 1, done.stderr
    assert "defaults" in done.stderr
    assert MAX_YAML_NODES > 5000 * 4
    assert MAX_YAML_DEPTH >= 16


def test_shipped_configuration_still_loads_after_a_refusal(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs(), encoding="utf-8")
    assert cti("check-config", "-c", str(bomb))[0].returncode == 2
    done, _ = cti("check-config", "-c", str(PROJECT / "config" / "cti.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")

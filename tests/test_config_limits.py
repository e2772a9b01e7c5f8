"""Hostile configuration files through the real CLI (a `python -m cti` process): an alias
bomb, absurd nesting, absurd numbers are refused with a `config error:` line naming the
problem and exit 2 — never a traceback and exit 1 (issue 16, item 8). A normal
configuration still loads afterwards.

That the refusal is cheap is shown by counting the loader's work, not by a clock (a timed
unit test flakes on a loaded machine): the bomb is measured on its few composed nodes and
never constructed, and the limits refuse exactly one past themselves. How long a refusal
takes is measured in benchmarks/config_limits.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from cti.settings import ConfigError, yamlfile
from cti.settings.yamlfile import MAX_YAML_DEPTH, MAX_YAML_NODES, read_yaml
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


def cti(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    # the timeout only keeps a hang from holding CI: nothing here measures time
    return subprocess.run(
        [sys.executable, "-m", "cti", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=PROJECT,
        check=False,
    )


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
def test_hostile_config_is_refused_cleanly(tmp_path: Path, case: str, command: str) -> None:
    text, reason = HOSTILE[case]
    assert len(billion_laughs()) < 409  # the bomb: a few hundred bytes
    path = tmp_path / "cti.yaml"
    path.write_text(text, encoding="utf-8")
    done = cti(command, "-c", str(path))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines, "no error printed"
    assert all(line.startswith("config error: ") for line in lines), lines
    assert reason in done.stderr


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
    done = cti("check-config", "-c", str(path))
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
    assert cti("check-config", "-c", str(bomb)).returncode == 2
    done = cti("check-config", "-c", str(PROJECT / "config" / "cti.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")


# ---- the work a refusal costs, counted in process


def size_calls(text: str, tmp_path: Path) -> tuple[int, ConfigError | None]:
    """How many times the loader's size walk visits a node while reading *text* (and the
    error, if refused). Counted with a profile hook on `_expanded_size`'s inner `size`."""
    path = tmp_path / "cti.yaml"
    path.write_text(text, encoding="utf-8")
    calls = 0
    target = yamlfile.__file__

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call" and frame.f_code.co_name == "size":
            calls += frame.f_code.co_filename == target

    sys.setprofile(profile)
    try:
        read_yaml(path)
    except ConfigError as exc:
        return calls, exc
    finally:
        sys.setprofile(None)
    return calls, None


def test_the_bomb_is_measured_on_its_composed_nodes_never_expanded(tmp_path: Path) -> None:
    """9**9 values once expanded; the walk visits each alias use once and each shared node's
    size is remembered: under a thousand visits, where expanding would be 387 million."""
    calls, error = size_calls(billion_laughs(), tmp_path)
    assert error is not None
    assert "aliases (*name) are expanded" in str(error)
    assert 0 < calls < 1000, calls


def test_the_bomb_is_never_constructed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal comes from the composed graph, before any Python object is built: the
    constructor is never reached (it is what would expand the aliases)."""

    def boom(*_a: object, **_k: object) -> None:
        pytest.fail("the constructor ran on an alias bomb")

    monkeypatch.setattr(yaml.constructor.SafeConstructor, "construct_document", boom)
    path = tmp_path / "cti.yaml"
    path.write_text(billion_laughs(), encoding="utf-8")
    with pytest.raises(ConfigError, match="aliases"):
        read_yaml(path)


def test_the_node_limit_refuses_exactly_one_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # {a: [x, x, x]}: the mapping, its key, the sequence and three items = 6 nodes
    text = "a: [x, x, x]\n"
    monkeypatch.setattr(yamlfile, "MAX_YAML_NODES", 6)
    assert size_calls(text, tmp_path)[1] is None
    monkeypatch.setattr(yamlfile, "MAX_YAML_NODES", 5)
    error = size_calls(text, tmp_path)[1]
    assert error is not None
    assert "more than 5 values" in str(error)


def test_the_depth_limit_refuses_exactly_one_past_it(tmp_path: Path) -> None:
    # the root mapping and its key's value are two levels; each "[" inside one more: at
    # MAX_YAML_DEPTH - 2 brackets the scalar is at the limit, one more bracket is past it
    def nested(brackets: int) -> str:
        return "a: " + "[" * brackets + "1" + "]" * brackets + "\n"

    assert size_calls(nested(MAX_YAML_DEPTH - 2), tmp_path)[1] is None
    error = size_calls(nested(MAX_YAML_DEPTH - 1), tmp_path)[1]
    assert error is not None
    assert f"nested more than {MAX_YAML_DEPTH} levels" in str(error)


def test_the_deep_nesting_stops_at_the_limit_not_at_the_end(tmp_path: Path) -> None:
    """5,000 nested `[`: the composer stops at level MAX_YAML_DEPTH + 1 (the line and the
    message say so) instead of recursing 5,000 deep; the size walk never starts."""
    calls, error = size_calls("ami: " + "[" * 5000 + "]" * 5000 + "\n", tmp_path)
    assert error is not None
    assert "nested more than" in str(error)
    assert calls == 0

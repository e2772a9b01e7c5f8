"""The systemd units shipped in deploy/systemd/ (docs/deployment.md) parse, and the daemon's
command lines in them are commands and options the `cti` CLI has.

`systemd-analyze verify` (Debian 12's systemd 252) reads each unit as systemd would: an
unknown key, a misspelt value or an ExecStart that is not executable is a warning on its
stderr, which must stay empty. The units name the installed path
(/opt/hotline-cti/.venv/bin/cti): the copy verified here points at this virtualenv's `cti`.
Drop-ins (asterisk, mosquitto, postgresql) are verified on a stand-in of the unit they
extend, since the packaged units are not all installed here (Asterisk runs in the
testbed's chroot).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
INSTALLED_CTI = "/opt/hotline-cti/.venv/bin/cti"
CTI = Path(sys.executable).with_name("cti")
SERVICES = sorted(UNITS.glob("*.service"))
DROP_INS = sorted(UNITS.glob("*.service.d/*.conf"))


def verify(directory: Path, unit: str) -> str:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (Debian's systemd package) is needed"
    done = subprocess.run(
        [analyze, "verify", str(directory / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=directory,
    )
    return (done.stderr + (f"exit {done.returncode}" if done.returncode else "")).strip()


def test_the_units_are_there() -> None:
    assert {p.name for p in SERVICES} == {"hotline-cti.service", "hotline-cti@.service"}
    assert {p.parent.name for p in DROP_INS} == {
        "asterisk.service.d",
        "mosquitto.service.d",
        "postgresql@.service.d",
    }


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_a_daemon_unit_verifies_clean(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text(encoding="utf-8")
    assert INSTALLED_CTI in text
    name = unit.name.replace("@.", "@a.")  # a template is verified as one of its instances
    (tmp_path / name).write_text(text.replace(INSTALLED_CTI, str(CTI)), encoding="utf-8")
    assert verify(tmp_path, name) == ""


@pytest.mark.parametrize("drop_in", DROP_INS, ids=lambda p: p.parent.name)
def test_a_drop_in_verifies_clean(drop_in: Path, tmp_path: Path) -> None:
    base = drop_in.parent.name.removesuffix(".d")
    name = base.replace("@.", "@15-main.")
    (tmp_path / name).write_text(
        "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n", encoding="utf-8"
    )
    (tmp_path / f"{base}.d").mkdir()
    shutil.copy(drop_in, tmp_path / f"{base}.d" / drop_in.name)
    assert verify(tmp_path, name) == ""
    # the stand-in alone is clean, so a warning above was the drop-in's
    bad = tmp_path / f"{base}.d" / "zz-check.conf"
    bad.write_text("[Service]\nNoSuchKey=1\n", encoding="utf-8")
    assert "NoSuchKey" in verify(tmp_path, name)  # the drop-in directory was read


def _cti_lines(text: str) -> list[list[str]]:
    lines = []
    for raw in text.splitlines():
        m = re.fullmatch(r"(Exec\w+)=[-@:+!]*(.*)", raw)
        if m and m.group(2).split(" ", 1)[0].endswith("/cti"):
            lines.append(shlex.split(m.group(2)))
    return lines


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_the_command_lines_are_real_cti_commands(unit: Path) -> None:
    lines = _cti_lines(unit.read_text(encoding="utf-8"))
    assert [argv[1] for argv in lines] == ["run"], lines
    for argv in lines:
        assert argv[0] == INSTALLED_CTI
        commands = subprocess.run(
            [str(CTI), "--help"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        assert re.search(rf"^\s+{argv[1]}\s", commands, re.MULTILINE), commands
        usage = subprocess.run(
            [str(CTI), argv[1], "--help"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        options = [a for a in argv[2:] if a.startswith("-")]
        assert options == ["-c", "--pidfile"], argv
        for option in options:
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}[\s,\]]", usage), (option, usage)
        assert argv[argv.index("-c") + 1].startswith("/etc/hotline-cti/")
        assert argv[argv.index("--pidfile") + 1].startswith("/run/hotline-cti")


def test_the_pidfile_is_in_the_runtime_directory() -> None:
    """`cti reload` finds the daemon by the pidfile: it must be in the unit's
    RuntimeDirectory (created for User=cti, removed at stop)."""
    for unit in SERVICES:
        text = unit.read_text(encoding="utf-8")
        runtime = re.search(r"^RuntimeDirectory=(\S+)$", text, re.MULTILINE)
        assert runtime is not None, unit
        assert f"--pidfile /run/{runtime.group(1)}/cti.pid" in text, unit

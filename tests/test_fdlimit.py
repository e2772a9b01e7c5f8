"""The file descriptor budget (issue 16 item 3): the HTTP and FastAGI caps plus a reserve
must fit RLIMIT_NOFILE, or the daemon refuses to start with a configuration error."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import yaml

from cti.adapters.fdlimit import FD_RESERVE, fd_budget
from cti.settings import load_settings

PROJECT = Path(__file__).resolve().parents[1]


def _settings(tmp_path: Path, **http: object) -> Path:
    data = yaml.safe_load((PROJECT / "config" / "cti.yaml").read_text(encoding="utf-8"))
    data["http"].update(http)
    data["database"]["url"] = f"sqlite+aiosqlite:///{tmp_path}/cti.db"
    path = tmp_path / "cti.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_default_configuration_fits_the_usual_1024(tmp_path: Path) -> None:
    settings = load_settings(_settings(tmp_path))
    budget = fd_budget(settings, 1024)
    cap = settings.http.max_connections
    assert budget.needed == cap + cap // 4 + settings.ivr.max_sessions + FD_RESERVE
    assert budget.fits, budget.problem()


def test_a_cap_that_does_not_fit_is_named(tmp_path: Path) -> None:
    budget = fd_budget(load_settings(_settings(tmp_path, max_connections=5000)), 1024)
    assert not budget.fits
    assert "http.max_connections and its refusals (5064)" in budget.problem()
    assert "LimitNOFILE=" in budget.problem()


def test_cti_run_refuses_to_start_when_the_limit_is_too_low(tmp_path: Path) -> None:
    path = _settings(tmp_path, max_connections=5000)

    def low_limit() -> None:  # soft and hard: raising to the hard limit cannot help
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    res = subprocess.run(
        [sys.executable, "-m", "cti", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert "RLIMIT_NOFILE" in res.stderr
    assert "http.max_connections and its refusals (5064)" in res.stderr

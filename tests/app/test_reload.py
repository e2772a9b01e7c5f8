"""The reload: what changes live, what needs a restart, a bad file refused, `cti reload`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from structlog.testing import capture_logs

from cti.app.pidfile import read_pid, status_path, write_pidfile, write_status
from cti.app.reload import Reloader, ReloadStats
from cti.app.reload_command import reload_daemon
from cti.settings import Settings, load_settings
from cti.settings.reload import ReloadPlan, changed_paths, plan_reload

SEAT = {"id": "1001", "endpoint": "PJSIP/1001", "skills": {"general": 5}}
TOKEN = "x" * 32


def base() -> dict[str, Any]:
    return {
        "ami": {"nodes": [{"name": "main", "username": "cti", "secret": "s"}]},
        "database": {"url": "sqlite+aiosqlite:////tmp/x.db"},
        "http": {"tokens": [{"name": "sup", "token": TOKEN, "scopes": ["queue"]}]},
        "numberplan": {"lines": [{"number": "12345", "name": "12345"}], "seats": [{**SEAT}]},
    }


def load(tmp_path: Path, data: dict[str, Any]) -> Settings:
    path = tmp_path / "cti.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_settings(path, env={})


def test_live_settings_apply_and_the_rest_waits_for_a_restart(tmp_path: Path) -> None:
    old = load(tmp_path, base())
    data = base()
    data["numberplan"]["seats"].append(
        {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"general": 1}}
    )
    data["numberplan"]["queue"] = {"wrapup_s": 5, "aging_per_s": 2.0}
    data["http"]["tokens"][0]["token"] = "y" * 32
    data["http"]["port"] = 9090
    data["ami"]["nodes"][0]["host"] = "10.0.0.2"
    data["database"]["url"] = "sqlite+aiosqlite:////tmp/y.db"
    new = load(tmp_path, data)
    plan = plan_reload(old, new)
    assert plan.applied == ("numberplan.seats", "numberplan.queue.wrapup_s", "http.tokens")
    assert plan.needs_restart == (
        "ami.nodes",
        "database.url",
        "numberplan.queue.aging_per_s",
        "http.port",
    )
    s = plan.settings
    assert [seat.id for seat in s.numberplan.seats] == ["1001", "1002"]
    assert s.numberplan.queue.wrapup_s == 5
    assert s.numberplan.queue.aging_per_s == old.numberplan.queue.aging_per_s  # left as it was
    assert s.http.tokens[0].token.get_secret_value() == "y" * 32
    assert (s.http.port, s.ami, s.database) == (old.http.port, old.ami, old.database)
    assert plan.plan_changed
    assert plan.tokens_changed


def test_an_unchanged_file_changes_nothing_and_secrets_never_show(tmp_path: Path) -> None:
    old = load(tmp_path, base())
    assert changed_paths(old, load(tmp_path, base())) == ()
    data = base()
    data["ami"]["nodes"][0]["secret"] = "other"
    paths = changed_paths(old, load(tmp_path, data))
    assert paths == ("ami.nodes",)
    assert "other" not in repr(plan_reload(old, load(tmp_path, data)).needs_restart)


def reloader(tmp_path: Path, data: dict[str, Any]) -> tuple[Reloader, list[ReloadPlan]]:
    running = load(tmp_path, data)
    applied: list[ReloadPlan] = []
    r = Reloader(
        tmp_path / "cti.yaml",
        current=lambda: applied[-1].settings if applied else running,
        apply=applied.append,
        stats=ReloadStats(),
        log=structlog.get_logger("test"),
        status_file=tmp_path / "cti.reload.json",
    )
    return r, applied


async def test_a_bad_file_is_refused_with_check_configs_problems(tmp_path: Path) -> None:
    r, applied = reloader(tmp_path, base())
    data = base()
    data["numberplan"]["seats"][0]["skils"] = {}
    (tmp_path / "cti.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with capture_logs() as logs:
        outcome = await r.reload()
    assert outcome["result"] == "refused"
    assert applied == []
    (refused,) = [e for e in logs if e["event"] == "config_reload_refused"]
    assert refused["problems"] == outcome["errors"]
    assert "did you mean 'skills'" in refused["error"]
    assert r.stats.refused == 1
    written = json.loads((tmp_path / "cti.reload.json").read_text())
    assert written["errors"] == outcome["errors"]


async def test_a_good_file_is_applied_and_a_changed_dialplan_said(tmp_path: Path) -> None:
    r, applied = reloader(tmp_path, base())
    data = base()
    data["numberplan"]["blacklist"] = [{"number": "13900000000", "treatment": "last"}]
    (tmp_path / "cti.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with capture_logs() as logs:
        outcome = await r.reload()
    assert outcome["result"] == "applied"
    assert outcome["applied"] == ["numberplan.blacklist"]
    assert len(applied) == 1
    assert outcome["dialplan_stale"] is False  # the daemon decides it, not the dialplan
    assert "dialplan_stale" not in [e["event"] for e in logs]
    data["numberplan"]["seats"].append(
        {"id": "1002", "endpoint": "PJSIP/1002", "skills": {"general": 1}}
    )
    (tmp_path / "cti.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with capture_logs() as logs:
        outcome = await r.reload()
    assert outcome["dialplan_stale"] is True  # a member of the fallback queue (queues_cti)
    assert "dialplan_stale" in [e["event"] for e in logs]
    assert r.stats.applied == 2


# a syntactically valid argon2id hash (the settings check its form, not the password)
HASH_A = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
HASH_B = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$b3RoZXJvdGhlcm90aGVyb3RoZXI"


def web_users(*users: dict[str, Any]) -> dict[str, Any]:
    return {"users": list(users), "lockout_after": 5}


def test_web_users_reload_live_and_the_rest_of_web_waits(tmp_path: Path) -> None:
    agent = {"name": "a1001", "role": "agent", "seat": "1001", "password_hash": HASH_A}
    data = base()
    data["web"] = web_users(agent)
    old = load(tmp_path, data)
    data["web"] = {
        **web_users({**agent, "password_hash": HASH_B}, {"name": "root", "role": "admin",
                    "password_hash": HASH_A}),
        "lockout_after": 9,
    }  # fmt: skip
    plan = plan_reload(old, load(tmp_path, data))
    assert plan.applied == ("web.users",)
    assert plan.needs_restart == ("web.lockout_after",)
    assert plan.web_users_changed
    assert [u.name for u in plan.settings.web.users] == ["a1001", "root"]
    assert plan.settings.web.users[0].password_hash == HASH_B
    assert plan.settings.web.lockout_after == 5  # left as it was


async def test_a_web_user_with_a_bad_entry_is_refused_and_the_old_users_stay(
    tmp_path: Path,
) -> None:
    data = base()
    data["web"] = web_users(
        {"name": "a1001", "role": "agent", "seat": "1001", "password_hash": HASH_A}
    )
    r, applied = reloader(tmp_path, data)
    data["web"] = web_users(
        {"name": "a1001", "role": "agent", "password_hash": "plaintext-password"}
    )
    (tmp_path / "cti.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    outcome = await r.reload()
    assert outcome["result"] == "refused"
    assert applied == []
    errors = " ".join(outcome["errors"])
    assert "web.users.0.password_hash" in errors
    assert "plaintext-password" not in errors  # a password pasted by mistake is not echoed


def test_cti_reload_prints_the_daemons_outcome(tmp_path: Path) -> None:
    pidfile = tmp_path / "cti.pid"
    write_pidfile(pidfile)  # this test process: a `python -m pytest`, not a cti daemon
    with pytest.raises(Exception, match="not a cti daemon"):
        read_pid(pidfile)
    err = io.StringIO()
    assert reload_daemon(pidfile, timeout=0.1, out=io.StringIO(), err=err) == 1
    assert "stale pidfile" in err.getvalue()
    assert reload_daemon(tmp_path / "none.pid", timeout=0.1, out=io.StringIO(), err=err) == 1


def test_cti_reload_waits_for_a_new_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "cti.pid"
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr("cti.app.reload_command.read_pid", lambda _p: 4242)
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    write_status(status_path(pidfile), {"seq": 1, "at": 1.0, "result": "applied"})
    answers = iter(
        [{"seq": 2, "at": 2.0, "result": "refused", "errors": ["http.port: bad (line 3)"]}]
    )

    def sleep(_s: float) -> None:
        write_status(status_path(pidfile), next(answers))

    out, err = io.StringIO(), io.StringIO()
    assert reload_daemon(pidfile, timeout=5, out=out, err=err, sleep=sleep) == 2
    assert [pid for pid, _sig in sent] == [4242]
    assert err.getvalue().splitlines()[0] == "config error: http.port: bad (line 3)"

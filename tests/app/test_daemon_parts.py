"""The daemon's own parts, without a network: the effect table covers every effect, short
background jobs run in the one TaskGroup, and a call id is built and split in one place."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import get_args

import pytest
import structlog
from structlog.testing import capture_logs

from cti.adapters.db.store import Store
from cti.app import Daemon, ShutdownError
from cti.app.daemon import answerer_fields
from cti.app.jobs import Jobs
from cti.calls.ids import CallRef
from cti.core import Effect
from cti.logs import mask_phone_numbers
from cti.settings import load_settings


def daemon(tmp_path: Path) -> Daemon:
    config = tmp_path / "cti.yaml"
    config.write_text(
        "ami: {nodes: [{name: main, username: cti, secret: s}]}\n"
        f'database: {{url: "sqlite+aiosqlite:///{tmp_path}/cti.db"}}\n',
        encoding="utf-8",
    )
    settings = load_settings(config, env={})
    return Daemon(settings, Store(settings.database.url), log=structlog.get_logger("test"))


async def test_every_effect_type_has_its_entry_in_the_effect_table(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    table = d._effect_table()
    assert set(get_args(Effect)) <= set(table)


async def test_every_task_has_a_name_and_lives_in_the_one_group(tmp_path: Path) -> None:
    d = daemon(tmp_path)
    tasks = list(d.tasks())
    try:
        names = [name for _, name in tasks]
        assert len(names) == len(set(names))
        assert {"core.events", "core.timers", "adapter.mqtt", "adapter.ami[main]"} <= set(names)
    finally:
        for coro, _ in tasks:
            coro.close()


async def test_a_job_runs_in_the_group_and_a_failure_costs_that_job_only() -> None:
    jobs = Jobs(log=structlog.get_logger("test"))
    ran: list[str] = []

    async def ok(name: str) -> None:
        ran.append(name)

    async def boom() -> None:
        raise RuntimeError("disk full")

    jobs.start(ok("before"), "early")  # before the group runs: waits for it
    with capture_logs() as logs:
        async with asyncio.TaskGroup() as tg:
            jobs.attach(tg)
            jobs.start(boom(), "boom")
            jobs.start(ok("after"), "late")
    assert ran == ["before", "after"]
    [failed] = [r for r in logs if r["event"] == "background_task_failed"]
    assert failed["task"] == "boom"
    assert "disk full" in failed["error"]


async def test_shutdown_cancels_a_job_still_running() -> None:
    jobs = Jobs(log=structlog.get_logger("test"))
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def stop() -> None:
        await asyncio.sleep(0.01)
        raise ShutdownError

    async def run() -> None:
        async with asyncio.TaskGroup() as tg:
            jobs.attach(tg)
            jobs.start(forever(), "forever")
            tg.create_task(stop())

    with pytest.raises(ExceptionGroup) as group:
        await run()
    assert group.group_contains(ShutdownError)
    assert cancelled.is_set()


def test_a_call_id_is_node_colon_linkedid() -> None:
    ref = CallRef.parse("main:1700000000.12")
    assert ref == CallRef("main", "1700000000.12")
    assert str(ref) == "main:1700000000.12"
    assert CallRef.parse("110:J42").is_data_transfer
    for bad in ("main", ":x", "main:"):
        with pytest.raises(ValueError, match="not a call id"):
            CallRef.parse(bad)


def test_the_call_ended_line_masks_a_citizen_who_answered_an_originated_call() -> None:
    # A callback is answered by the citizen, not by a seat: the log scan of a CI run found
    # that number whole under `seat` (an id key the masking keeps).
    def logged(answered_by: str | None, *, is_seat: bool) -> dict[str, object]:
        fields = answerer_fields(answered_by, is_seat=is_seat)
        return dict(mask_phone_numbers(None, "info", dict(fields)))

    assert logged("13900001234", is_seat=False) == {"callee": "139****1234"}
    assert logged("1001", is_seat=True) == {"seat": "1001"}
    assert logged("8001234", is_seat=True) == {"seat": "8001234"}  # a seat id stays whole
    assert logged(None, is_seat=False) == {"seat": None}

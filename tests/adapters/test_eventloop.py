"""The event loop switch (issue 12): uvloop when installed and wanted, asyncio otherwise."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import uvloop

from cti.adapters.eventloop import loop_factory


def test_asyncio_choice_is_the_standard_loop() -> None:
    assert loop_factory("asyncio") == (None, "asyncio")


def test_auto_runs_uvloop_when_installed() -> None:
    factory, note = loop_factory("auto")
    assert note == "uvloop"
    assert factory is uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(asyncio.sleep(0, "ok")) == "ok"
        assert type(runner.get_loop()).__module__.startswith("uvloop")


@pytest.mark.parametrize(
    ("choice", "note"), [("auto", "asyncio"), ("uvloop", "asyncio (uvloop not installed)")]
)
def test_without_uvloop_falls_back_to_asyncio(
    monkeypatch: pytest.MonkeyPatch, choice: Any, note: str
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # None there: the import fails
    assert loop_factory(choice) == (None, note)

"""The browser pages in the daemon: the console's backend, the sessions, the live hub.

:class:`WebPages` is what :mod:`cti.adapters.http.console` needs
(:class:`~cti.adapters.http.console.ConsoleBackend`), put together from the parts the daemon
already has: agent commands and seat states through the HTTP facade (the same path as
``POST /api/v1/seats/{seat}/commands``), the callback list and its one-click callback
(:class:`~cti.app.callbacks.Callbacks`), the number plan for the transfer and escalation
buttons. The hub gets every MQTT publish through the adapter's tap (cti/app/daemon.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from fastapi import FastAPI
from structlog.typing import FilteringBoundLogger

from cti.adapters.db.callbacks import list_callbacks
from cti.adapters.db.store import Store
from cti.adapters.http import Metric
from cti.adapters.http.board import board_router
from cti.adapters.http.console import install_web
from cti.adapters.http.live import LiveHub
from cti.adapters.http.sessions import SessionTable
from cti.app.board import Board
from cti.app.callbacks import Callbacks
from cti.app.http_facade import HttpFacade
from cti.app.supervision import SupervisionDesk
from cti.queue.model import WaitingCall
from cti.settings import Settings

__all__ = ["WebPages"]


class WebPages:
    """The console's backend, the session table and the live hub of one daemon."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: HttpFacade,
        callbacks: Callbacks,
        supervision: SupervisionDesk,
        store: Store,
        waiting: Callable[[], Iterable[WaitingCall]],
        log: FilteringBoundLogger,
    ) -> None:
        self._settings = settings
        self._http = http
        self._callbacks = callbacks
        self._log = log
        self.sessions = SessionTable(settings.web)
        self.hub = LiveHub(
            queue_size=settings.web.stream_queue,
            batch_s=settings.web.stream_batch_ms / 1000,
            log=log,
        )
        # the supervisors' wallboard (docs/board.md): its own snapshot per user, on the hub
        self.board = Board(
            settings,
            hub=self.hub,
            desk=supervision,
            store=store,
            seat_states=http.seat_states,
            waiting=waiting,
            log=log,
        )
        for user in settings.web.users:
            if user.test_only:
                log.warning(
                    "web_test_user_configured",
                    user=user.name,
                    hint="a test-only user (web.users[].test_only): never in production",
                )

    def metrics(self) -> list[Metric]:
        """The browser pages in /metrics: sessions and streams open, events delivered,
        streams closed for falling behind."""

        def one(name: str, kind: Literal["counter", "gauge"], text: str, v: float) -> Metric:
            return Metric(name=name, kind=kind, help=text, samples=(({}, v),))

        hub = self.hub
        return [
            one("cti_web_sessions", "gauge", "Browser sessions logged in.", len(self.sessions)),
            one("cti_web_streams", "gauge", "Browser live streams open (/events).", len(hub)),
            one("cti_web_events_total", "counter", "Events queued to browser streams.",
                hub.delivered),
            one("cti_web_stream_overflows_total", "counter",
                "Browser streams closed: web.stream_queue events behind.", hub.overflows),
            one("cti_web_fanout_dropped_total", "counter",
                "Publishes the browsers' fan-out lost (its inbox full: a bug).", hub.inbox_dropped),
            one("cti_web_board_snapshots_total", "counter",
                "Board snapshots pushed to supervisors' streams.", self.board.snapshots),
        ]  # fmt: skip

    def install(self, app: FastAPI) -> None:
        install_web(
            app,
            self,
            self.sessions,
            self.hub,
            secure=self._settings.http.tls is not None,
            log=self._log,
            routers=(board_router(self.board, self.hub, self._log),),
        )

    def use_settings(self, settings: Settings) -> None:
        """A reloaded configuration: users removed, disabled or changed lose their sessions
        and their open live streams at once (a stream is not re-checked per event)."""
        self._settings = settings
        ended = self.sessions.use_settings(settings.web)
        streams = self.hub.end_streams(self.sessions.current)
        if ended or streams:
            self._log.info("web_sessions_ended", users=ended, streams=streams, cause="reload")
        self.board.use_settings(settings)

    # ---- ConsoleBackend

    def seat_state(self, seat: str) -> dict[str, Any] | None:
        return self._http.seat_state(seat)

    def seat_command(self, seat: str, payload: bytes) -> dict[str, Any]:
        return self._http.seat_command(seat, payload)

    def console_plan(self) -> dict[str, Any]:
        plan = self._settings.numberplan
        return {
            "lines": [
                {"number": ln.number, "name": ln.name, "department": ln.department}
                for ln in plan.lines
            ],
            "emergency": [
                {"number": e.number, "name": e.name, "modes": [str(m) for m in e.modes]}
                for e in plan.emergency
            ],
        }

    async def open_callbacks(self, limit: int) -> list[dict[str, Any]]:
        return await list_callbacks(self._callbacks.store, status="open", limit=limit)

    async def call_back(self, call_id: str, seat: str) -> tuple[int, dict[str, Any]]:
        return await self._callbacks.call_back(call_id, seat)

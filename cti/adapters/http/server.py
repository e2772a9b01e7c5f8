"""Serving the app: uvicorn on a socket bound here, inside the daemon's TaskGroup.

The daemon owns the signals and the lifetime (a cancelled task stops the server); the
protocol is uvicorn's h11 with the connection guard (:mod:`cti.adapters.http.guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from starlette.types import ASGIApp
from structlog.typing import FilteringBoundLogger

from cti.adapters.backoff import backoff_delay
from cti.adapters.http.guard import GuardStats, guarded_protocol
from cti.settings import HttpSettings

__all__ = ["serve_http"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT and stops
    this server by cancelling its task (uvicorn >= 0.29 captures signals in
    ``capture_signals``; older releases in ``install_signal_handlers``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:
        return


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # asyncio's create_server(sock=...) makes it non-blocking
    # the backlog holds no descriptor of ours: connections waiting there cost nothing
    return socket.create_server((host, port), family=family, backlog=128)


async def serve_http(
    app: ASGIApp,
    settings: HttpSettings,
    *,
    log: FilteringBoundLogger | None = None,
    bound: asyncio.Future[tuple[str, int]] | None = None,
    retry_min: float = 1.0,
    retry_max: float = 30.0,
    stats: GuardStats | None = None,
) -> None:
    """Serve *app* on ``settings.host:settings.port`` until cancelled (one TaskGroup task).

    The address is bound here, not by uvicorn: a port already in use is logged at error
    level and retried with backoff (calls keep being routed meanwhile) instead of
    uvicorn's ``sys.exit``. On cancellation the listener closes and open requests get up
    to 3 s to finish. uvicorn's own logs go to the standard library (warnings and up,
    rendered by structlog); its access log is off: :class:`~cti.adapters.http.edge.Edge`
    logs each request.

    Slow clients are bounded (docs/http-api.md, "Limits"): at most
    ``http.max_connections`` connections (past it 503 and closed), the headers within
    ``header_timeout_s`` (:mod:`cti.adapters.http.guard`), the body within
    ``body_timeout_s`` (:class:`~cti.adapters.http.edge.Edge`), idle keep-alive
    ``keepalive_timeout_s``, headers at most ``max_header_bytes``.

    Args:
        bound: resolved with the bound ``(host, port)`` once listening (tests; port 0).
        stats: the connection guard's counters (the daemon shows them in /metrics).
    """
    log = log or structlog.get_logger("cti.http")
    attempt = 0
    while True:
        try:
            sock = _bind(settings.host, settings.port)
        except OSError as exc:
            delay = backoff_delay(attempt, retry_min, retry_max)
            attempt += 1
            log.error(
                "http_bind_failed",
                host=settings.host,
                port=settings.port,
                error=str(exc),
                retry_in_s=round(delay, 2),
                hint="another process listens there? change http.port or set http.enabled: false",
            )
            await asyncio.sleep(delay)
            continue
        break
    host, port = sock.getsockname()[:2]
    tls = settings.tls
    config = uvicorn.Config(
        app,
        # the h11 protocol with the connection cap and the header deadline: uvicorn's own
        # limit_concurrency only counts connections once a request is complete, which a
        # slow client never sends (see cti/adapters/http/guard.py)
        http=guarded_protocol(
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_s,
            stats=stats if stats is not None else GuardStats(),
            log=log,
        ),
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]  # float works
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    if tls is not None:
        # the context validated with the settings (cti/settings/tls.py: TLS 1.2 at least,
        # the client CA when mutual), not uvicorn's own from file names
        config.load()
        config.ssl = tls.server_context()
    scheme = "https" if tls is not None else "http"
    server = _Server(config)
    log.info(
        "http_listening",
        host=host,
        port=port,
        tls=tls is not None,
        client_certificates=tls is not None and tls.client_ca is not None,
        docs=f"{scheme}://{host}:{port}/docs",
    )
    if bound is not None and not bound.done():
        bound.set_result((host, port))
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        server.should_exit = True
        if server.started:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await server.shutdown(sockets=[sock])
        log.info("http_stopped", host=host, port=port)
        raise
    finally:
        sock.close()

"""`cti run`: open the database, build the daemon, run its one TaskGroup, exit cleanly.

SIGHUP re-reads the configuration file (cti/app/reload.py); `--pidfile` writes the pid
for `cti reload`. Shutdown is an exception: SIGTERM/SIGINT set an event, the `shutdown`
task raises :class:`ShutdownError`, the group cancels everything else, and each adapter
closes its connection on the way out. Then the call records still in memory are stored (a bounded
wait) and the clients closed. The exit code says why the daemon stopped.

With ``ha.enabled`` (docs/high-availability.md) the daemon starts as the standby: its
state is loaded when it takes the lease (cti/app/ha.py), every transaction carries its epoch
(:func:`~cti.adapters.db.leader.install_fence`), and a leader that loses the lease exits
with :data:`EXIT_STEPPED_DOWN` for its supervisor to start it again as the standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger

from cti import __version__
from cti.adapters.ami import AmiLoginError
from cti.adapters.db.leader import install_fence, pg_connect_args
from cti.adapters.db.records import RecordWriter
from cti.adapters.db.store import Store
from cti.adapters.fdlimit import fd_budget, raise_nofile_limit
from cti.app.daemon import Daemon
from cti.app.ha import LeadershipLost
from cti.app.pidfile import remove_pidfile, status_path, write_pidfile
from cti.settings import Settings

__all__ = [
    "EXIT_AMI_LOGIN",
    "EXIT_CONFIG",
    "EXIT_DATABASE",
    "EXIT_STEPPED_DOWN",
    "ShutdownError",
    "run",
]

EXIT_CONFIG = 2
EXIT_AMI_LOGIN = 3
EXIT_DATABASE = 4
EXIT_STEPPED_DOWN = 5  # ha: this leader lost the lease; start it again (as the standby)


class ShutdownError(Exception):
    """Raised inside the TaskGroup to stop the daemon."""


async def _raise_shutdown(trigger: Callable[[], Awaitable[object]]) -> None:
    await trigger()
    raise ShutdownError


async def _flush_records(records: RecordWriter, log: FilteringBoundLogger) -> None:
    """Store the call records still in memory before exiting (bounded wait)."""
    if not records.pending:
        return
    writer = asyncio.create_task(records.run(), name="adapter.store.flush")
    try:
        async with asyncio.timeout(5):
            await records.flushed()
    except TimeoutError:
        log.error("call_records_not_flushed", pending=records.pending)
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def _fds_fit(settings: Settings, log: FilteringBoundLogger) -> bool:
    """Before any socket: the HTTP and FastAGI caps must leave AMI its descriptors."""
    budget = fd_budget(settings, raise_nofile_limit())
    if not budget.fits:
        log.error("cti_fatal", error=f"configuration: {budget.problem()}")
        return False
    log.info("fd_budget", limit=budget.limit, needed=budget.needed, http=budget.http)
    return True


async def _open(
    settings: Settings,
    log: FilteringBoundLogger,
    *,
    config_path: Path | None = None,
    pidfile: Path | None = None,
) -> tuple[Store, Daemon] | int:
    """The database and the daemon built on it, or the exit code of why not."""
    if not _fds_fit(settings, log):
        return EXIT_CONFIG
    ha = settings.ha
    store = Store(
        settings.database.url,
        connect_args=pg_connect_args(ha.node(), ha.idle_in_transaction_s) if ha.enabled else None,
    )
    try:
        await store.open(migrate=settings.database.migrate)
    except Exception as exc:  # noqa: BLE001 - any driver error: report it, exit clearly
        log.error(
            "cti_fatal",
            error=f"cannot open the database: {exc}",
            hint="check database.url (CTI_DATABASE_URL) and the directory's permissions",
        )
        await store.close()
        return EXIT_DATABASE
    try:
        daemon = Daemon(
            settings,
            store,
            log=log,
            config_path=config_path,
            reload_status=status_path(pidfile) if pidfile is not None else None,
        )
    except ValueError as exc:  # what only shows when used, e.g. an unreadable CA file
        log.error("cti_fatal", error=f"configuration: {exc}", hint="fix it; cti check-config")
        await store.close()
        return EXIT_CONFIG
    if ha.enabled:  # after the migrations, which no epoch fences
        leadership = daemon.leadership
        install_fence(store.engine, lambda: leadership.write_epoch(time.monotonic()))
    return store, daemon


async def _load_state(daemon: Daemon) -> None:
    """What the database remembers, into the core; with ha, at the takeover instead (the
    leader's rows change until then)."""
    if not daemon.settings.ha.enabled:
        await daemon.load_state()


def _reloads_on(
    loop: asyncio.AbstractEventLoop,
    daemon: Daemon,
    pidfile: Path | None,
    log: FilteringBoundLogger,
) -> None:
    """SIGHUP reloads from now on; the pidfile tells `cti reload` whom to signal."""
    loop.add_signal_handler(signal.SIGHUP, daemon.reloader.request)
    if pidfile is not None:
        try:
            write_pidfile(pidfile)
        except OSError as exc:  # `cti reload` will not find it; SIGHUP still works
            log.warning("pidfile_not_written", file=str(pidfile), error=str(exc))


def _reloads_off(loop: asyncio.AbstractEventLoop, pidfile: Path | None) -> None:
    loop.remove_signal_handler(signal.SIGHUP)
    if pidfile is not None:
        remove_pidfile(pidfile)


async def run(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    config_path: Path | None = None,
    pidfile: Path | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `shutdown_trigger` returns).

    `config_path` is the file SIGHUP re-reads (none: a reload is refused); `pidfile`, if
    given, gets the pid (for `cti reload`) and, beside it, each reload's outcome.

    Returns the process exit code: 0 after a clean shutdown, 2 when a setting proves
    unusable only now (e.g. workorders.http.ca_file is not a CA bundle), 3 when an Asterisk node
    refused the first login (wrong username/secret: a configuration error), 4 when the
    database cannot be opened.
    """
    log = structlog.get_logger("cti")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if shutdown_trigger is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        shutdown_trigger = stop.wait

    # SIGHUP's default action ends the process: a reload asked for while starting is
    # ignored (said so), not a stop
    loop.add_signal_handler(
        signal.SIGHUP, lambda: log.warning("config_reload_ignored", reason="starting")
    )
    opened = await _open(settings, log, config_path=config_path, pidfile=pidfile)
    if isinstance(opened, int):
        loop.remove_signal_handler(signal.SIGHUP)
        return opened
    store, daemon = opened
    _reloads_on(loop, daemon, pidfile, log)
    await _load_state(daemon)
    # Everything made so far (modules, settings, SQLAlchemy and pydantic machinery, the
    # restored state: ~0.5 M objects) lives as long as the process; a full collection
    # walked all of it, 70-170 ms with the event loop stopped, several times a minute under
    # load: the answer pops' p99 tail (docs/performance.md). Frozen, the collector skips it.
    gc.collect()
    gc.freeze()
    log.info(
        "cti_starting",
        version=__version__,
        nodes=[f"{n.name}@{n.host}:{n.port}" for n in settings.ami.nodes],
        seats=len(settings.numberplan.seats),
        lines=len(settings.numberplan.lines),
    )
    started = time.monotonic()
    code = 0
    try:
        async with asyncio.TaskGroup() as tg:
            daemon.start(tg)
            tg.create_task(_raise_shutdown(shutdown_trigger), name="shutdown")
    except* ShutdownError:
        log.info("cti_stopping", reason="signal")
    except* AmiLoginError as group:
        for err in group.exceptions:
            log.error(
                "cti_fatal",
                error=str(err),
                hint="check ami.nodes[].username and the "
                "secret (CTI_AMI_SECRET / CTI_AMI_SECRET_<NODE>) against manager.conf",
            )
        code = EXIT_AMI_LOGIN
    except* LeadershipLost as group:
        step = group.exceptions[0]
        log.warning(
            "cti_stopping",
            reason="leadership_lost",
            detail=str(step),
            hint="exits for its supervisor to start it again as the standby",
        )
        code = EXIT_STEPPED_DOWN
    finally:
        _reloads_off(loop, pidfile)
        if shutdown_trigger is stop.wait:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        await _flush_records(daemon.records, log)
        await daemon.aclose()
        await store.close()
    log.info(
        "cti_stopped",
        uptime_s=round(time.monotonic() - started, 3),
        events=daemon.tally.inputs,
        calls=daemon.tally.calls_ended,
        exit_code=code,
    )
    return code

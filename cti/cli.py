"""The ``cti`` command.

Subcommands::

    cti run [-c FILE] [--pidfile FILE] run the daemon (SIGHUP: reload the configuration)
    cti reload [--pidfile FILE]        make the running daemon re-read its configuration
    cti check-config [-c FILE]         validate the configuration, print every problem
    cti record [-c FILE] -o OUT [--node NAME] [--duration SECONDS]
                                       record AMI traffic as JSON Lines (a trace)
    cti replay TRACE                   one JSON object per finished call of a trace
    cti seat-console SEAT [-c FILE]    a terminal agent desktop for one seat (MQTT)
    cti dialplan [-c FILE] [--queues] [-o OUT | --check FILE]
                                       print the Asterisk dialplan of the number plan
                                       (extensions_cti.conf; --queues: queues_cti.conf)
    cti config-schema                  print the JSON schema of the configuration file
    cti --version

The configuration file is ``-c FILE``, else ``$CTI_CONFIG``, else ``config/cti.yaml``.

Exit codes:
    0    success
    1    ``dialplan --check``: differs; ``replay``: some trace lines were skipped;
         ``reload``: no daemon to signal, or it did not answer in time
    2    configuration or usage error (every problem is printed on stderr,
         one per line, prefixed ``config error:``); ``reload``: the daemon refused
         the file (its problems printed the same way) and runs on as before
    3    ``run``/``record``: an Asterisk node refused the first login
    4    ``run``: the database cannot be opened
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from cti.logs import configure_logging
from cti.settings import (
    ConfigError,
    Settings,
    load_settings,
    resolve_config_path,
    settings_json_schema,
)

__all__ = [
    "EXIT_AMI_UNREACHABLE",
    "EXIT_CONFIG",
    "EXIT_DIFFERS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "main",
]

EXIT_OK: Final = 0
EXIT_DIFFERS: Final = 1
EXIT_CONFIG: Final = 2
EXIT_AMI_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130


def main(argv: list[str] | None = None) -> int:
    """Run the ``cti`` command with *argv* (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse wants to exit
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "config-schema": _config_schema,
        "check-config": lambda a: _check_config(a.config, live=a.live),
        "run": lambda a: _run(a.config, pidfile=a.pidfile),
        "reload": _reload,
        "dialplan": _dialplan,
        "replay": _replay,
        "record": _record,
        "seat-console": _seat_console,
        "outbox": _outbox,
        "report": _report,
        "db": _db,
        "hash-password": _hash_password,
    }
    return handlers[args.command](args)  # argparse has checked the choices


def _hash_password(_args: argparse.Namespace) -> int:
    """The argon2id hash of a password for web.users[].password_hash: read from stdin
    (first line), or asked twice on a terminal; the password is never an argument (it
    would sit in the shell history and in `ps`)."""
    import getpass  # noqa: PLC0415 - only this command needs it
    import hmac  # noqa: PLC0415

    from cti.adapters.http.sessions import MAX_PASSWORD_CHARS, hash_password  # noqa: PLC0415

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
        if not hmac.compare_digest(again.encode(), password.encode()):
            print("the two passwords differ", file=sys.stderr)
            return EXIT_CONFIG
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not 8 <= len(password) <= MAX_PASSWORD_CHARS:
        print(f"a password has 8 to {MAX_PASSWORD_CHARS} characters", file=sys.stderr)
        return EXIT_CONFIG
    print(hash_password(password))
    return EXIT_OK


def _config_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(settings_json_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _seat_console(args: argparse.Namespace) -> int:
    # an agent's console needs the broker, not the AMI secret: don't ask for it
    env = dict(os.environ)
    env.setdefault("CTI_AMI_SECRET", "not-used-by-seat-console")
    settings = _load(args.config, env)
    if settings is None:
        return EXIT_CONFIG
    from cti.seatconsole import seat_console  # noqa: PLC0415 -- lazy, like `run`

    try:
        return asyncio.run(
            seat_console(
                settings.mqtt,
                args.seat,
                username=args.user,
                password=os.environ.get("CTI_SEAT_PASSWORD"),
            )
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _outbox(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env.setdefault("CTI_AMI_SECRET", "not-used-by-outbox")  # only the database is needed
    settings = _load(args.config, env)
    if settings is None:
        return EXIT_CONFIG
    # lazy, like `run`; the tables must be known before the store opens
    from cti.adapters.db.store import Store  # noqa: PLC0415
    from cti.adapters.workorders.operator import outbox_list, outbox_requeue  # noqa: PLC0415

    async def go() -> int:
        store = Store(settings.database.url)
        try:
            await store.open()
            if args.action == "list":
                return await outbox_list(store, sys.stdout)
            if not args.keys and not args.all:
                sys.stderr.write("cti outbox requeue: give KEYs or --all\n")
                return EXIT_CONFIG
            return await outbox_requeue(store, args.keys, sys.stdout)
        finally:
            await store.close()

    return asyncio.run(go())


def _db(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env.setdefault("CTI_AMI_SECRET", "not-used-by-db")  # only the database is needed
    settings = _load(args.config, env)
    if settings is None:
        return EXIT_CONFIG
    from cti.adapters.db.db_command import db_command  # noqa: PLC0415 - lazy, like `run`

    return asyncio.run(db_command(settings.database.url, args.action, sys.stdout, sys.stderr))


def _report(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    env.setdefault("CTI_AMI_SECRET", "not-used-by-report")  # only the database is needed
    settings = _load(args.config, env)
    if settings is None:
        return EXIT_CONFIG
    from cti.kpis.period import ReportWindowError, report_window  # noqa: PLC0415

    try:
        window = report_window(args.start, args.end, settings.kpis.timezone, now=time.time())
    except ReportWindowError as exc:
        print(f"cti report: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # lazy, like `run`: the database only for this command
    from cti.adapters.db.kpi_rollup import report  # noqa: PLC0415
    from cti.adapters.db.store import Store  # noqa: PLC0415
    from cti.kpis.report import report_csv, report_json, report_table  # noqa: PLC0415

    thresholds = settings.kpis.thresholds()

    async def figures() -> Any:
        # aggregated in SQL (cti/adapters/db/kpi_sql.py): a year is ~1 M entries; closed
        # whole days from the per-day roll-up, rolled here if missing (kpi_rollup.py)
        store = Store(settings.database.url)
        k = settings.kpis
        try:
            await store.open()
            return await report(
                store,
                window.start,
                window.end,
                thresholds=thresholds,
                by=args.by,
                tz=window.tz,
                tz_name=k.timezone if k.rollup else None,
            )
        finally:
            await store.close()

    whole, groups = asyncio.run(figures())
    w = window
    if args.format == "json":
        body = report_json(
            start=w.start_label,
            end=w.end_label,
            timezone=w.tz_name,
            by=args.by,
            thresholds=thresholds,
            centre=whole,
            groups=groups,
        )
        print(json.dumps(body, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        sys.stdout.write(report_csv(by=args.by, thresholds=thresholds, centre=whole, groups=groups))
    else:
        sys.stdout.write(
            report_table(
                start=w.start_label,
                end=w.end_label,
                timezone=w.tz_name,
                by=args.by,
                thresholds=thresholds,
                centre=whole,
                groups=groups,
            )
        )
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from cti.replay import main_replay  # noqa: PLC0415 -- lazy, like `run`

    return main_replay(args.trace, sys.stdout)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cti", description="CTI server of the 12345 government service hotline."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (default: $CTI_CONFIG, else config/cti.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pidfile = argparse.ArgumentParser(add_help=False)
    pidfile.add_argument(
        "--pidfile",
        type=Path,
        metavar="FILE",
        default=os.environ.get("CTI_PIDFILE") or None,
        help="the daemon's pidfile (default: $CTI_PIDFILE; `reload`: else "
        "/run/hotline-cti/cti.pid, what the systemd unit uses)",
    )
    sub.add_parser(
        "run",
        parents=[config, pidfile],
        help="run the daemon (SIGHUP re-reads the configuration: docs/configuration.md)",
    )
    reload = sub.add_parser(
        "reload",
        parents=[pidfile],
        help="make the running daemon re-read its configuration file and print the outcome",
        description="Send SIGHUP to the daemon of the pidfile and print what it did: the "
        "settings applied live, those that need a restart, or the problems that made it "
        "refuse the file (it then runs on with its configuration as before). The daemon "
        "re-reads the file it was started with, in its own environment. Same as "
        "`systemctl reload hotline-cti`, which also works without a pidfile.",
    )
    reload.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for the daemon's answer (default 10)",
    )
    check = sub.add_parser(
        "check-config", parents=[config], help="validate the configuration and exit"
    )
    check.add_argument(
        "--live",
        action="store_true",
        help="also log in to every Asterisk node and check that the IVR's prompts exist "
        "there (exit 1 when some are missing, 3 when a node cannot be reached)",
    )
    record = sub.add_parser("record", parents=[config], help="record AMI traffic (JSON Lines)")
    record.add_argument("-o", "--output", type=Path, required=True, metavar="OUT")
    record.add_argument("--node", metavar="NAME", help="only this AMI node (default: all)")
    record.add_argument(
        "--duration", type=_positive_seconds, metavar="SECONDS", help="stop after this long"
    )
    dialplan = sub.add_parser(
        "dialplan",
        parents=[config],
        help="generate the Asterisk dialplan (or fallback queues) of the number plan",
        description="Print extensions_cti.conf (with --queues: queues_cti.conf) generated "
        "from the numberplan: and dialplan: sections. See docs/dialplan.md.",
    )
    dialplan.add_argument(
        "--queues", action="store_true", help="the fallback queues (queues_cti.conf) instead"
    )
    out = dialplan.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, metavar="OUT", help="write to OUT")
    out.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        help="exit 1 with a unified diff when FILE differs from what would be generated",
    )
    console = sub.add_parser(
        "seat-console",
        parents=[config],
        help="a terminal agent desktop for one seat (MQTT): state, pops, commands; logs in "
        "to the broker as the seat ($CTI_SEAT_PASSWORD)",
    )
    console.add_argument("seat", metavar="SEAT")
    console.add_argument(
        "--user",
        metavar="NAME",
        help="broker login (default: the seat id); the password comes from $CTI_SEAT_PASSWORD",
    )
    outbox = sub.add_parser(
        "outbox",
        parents=[config],
        help="tickets that did not reach the work-order backend: list, requeue parked ones",
        description="The durable outbox of ticket operations (docs/workorders.md). `list` "
        "shows the backlog and the parked rows (refused by the backend); after fixing the "
        "cause, `requeue` puts them back and a running daemon delivers them at its next "
        "poll. Exit 1 when a KEY was not a parked row.",
    )
    outbox.add_argument("action", choices=["list", "requeue"])
    outbox.add_argument(
        "keys", nargs="*", metavar="KEY", help="rows to requeue (`list` shows them)"
    )
    outbox.add_argument("--all", action="store_true", help="requeue every parked row")
    db = sub.add_parser(
        "db",
        parents=[config],
        help="the database schema: upgrade it (migrations), or show its revision",
        description="`upgrade` brings the database of database.url to this version's schema "
        "(Alembic migrations; a database of the version before migrations is adopted with "
        "its data); `status` prints its revision, exit 1 when it is behind, 4 when the "
        "database cannot be opened. The daemon upgrades at start unless database.migrate "
        "is false (docs/deployment.md).",
    )
    db.add_argument("action", choices=["upgrade", "status"])
    report = sub.add_parser(
        "report",
        parents=[config],
        help="KPIs of a period from the stored facts: 接通率, 15秒接通率, SL, 放弃率, ASA, AHT",
        description="The official KPIs (docs/kpis.md) of the queue entries that began in "
        "[--from, --to), from the database. --from/--to: an ISO date (2026-03-01) or "
        "date-time (2026-03-01T08:00), local time in kpis.timezone (else the machine's); a "
        "date as --to includes that day. Default: today so far.",
    )
    report.add_argument("--from", dest="start", metavar="WHEN", help="start (inclusive)")
    report.add_argument("--to", dest="end", metavar="WHEN", help="end (exclusive)")
    report.add_argument(
        "--by", choices=["line", "department", "seat", "hour", "day"], help="one row per group"
    )
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    replay = sub.add_parser(
        "replay",
        help="feed a trace through the call-tracking core; print one JSON object per call",
        description="Read a trace (JSON Lines from `cti record`, or a plain AMI wire "
        "capture) and print one JSON object per finished call. Exit 1 when lines were "
        "skipped (reported on stderr), 2 when the file cannot be read. "
        "See docs/call-records.md.",
    )
    replay.add_argument("trace", type=Path, metavar="TRACE")
    sub.add_parser("config-schema", help="print the JSON schema of the configuration file")
    sub.add_parser(
        "hash-password",
        help="print the argon2 hash of a password (stdin, or asked) for web.users[].password_hash",
    )
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        msg = f"not a positive number of seconds: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _version() -> str:
    try:
        return metadata.version("hotline-cti")
    except metadata.PackageNotFoundError:
        return "unknown"


def _load(config: Path | None, env: Mapping[str, str] | None = None) -> Settings | None:
    try:
        return load_settings(config, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return None


def _check_config(config: Path | None, *, live: bool = False) -> int:
    path = resolve_config_path(config)
    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    nodes = ", ".join(f"{n.name}@{n.host}:{n.port}" for n in settings.ami.nodes)
    print(f"OK: {path}: {len(settings.ami.nodes)} Asterisk node(s): {nodes}")
    if not live:
        return EXIT_OK
    from cti.adapters.ami import AmiError  # noqa: PLC0415 - lazy
    from cti.adapters.prompt_check import check_live, configured_prompts  # noqa: PLC0415

    try:
        result = asyncio.run(check_live(settings))
    except (TimeoutError, OSError, AmiError) as exc:
        print(f"error: cannot ask Asterisk: {exc or 'timed out'}", file=sys.stderr)
        return EXIT_AMI_UNREACHABLE
    code = EXIT_OK
    total = len(configured_prompts(settings))
    for node, missing in result.items():
        if not missing:
            print(f"OK: node {node}: all {total} prompts exist")
            continue
        code = EXIT_DIFFERS
        for setting, name in sorted(missing.items()):
            print(f"missing on node {node}: {setting}: {name}")
    return code


def _run(config: Path | None, *, pidfile: Path | None = None) -> int:
    path = resolve_config_path(config)
    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    configure_logging(settings.logging)
    # lazy: the daemon's imports only for `run`
    import structlog  # noqa: PLC0415

    from cti import app  # noqa: PLC0415
    from cti.adapters.eventloop import loop_factory  # noqa: PLC0415

    factory, loop_note = loop_factory(settings.event_loop)
    structlog.get_logger("cti").info("event_loop", loop=loop_note, wanted=settings.event_loop)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            # the absolute path: SIGHUP re-reads this very file, whatever the cwd is then
            return runner.run(app.run(settings, config_path=path.absolute(), pidfile=pidfile))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _reload(args: argparse.Namespace) -> int:
    from cti.app.reload_command import reload_daemon  # noqa: PLC0415 -- lazy, like `run`

    return reload_daemon(args.pidfile, timeout=args.timeout, out=sys.stdout, err=sys.stderr)


def _record(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return EXIT_CONFIG
    names = [node.name for node in settings.ami.nodes]
    if args.node is not None and args.node not in names:
        print(
            f"config error: --node {args.node!r}: no such node in ami.nodes "
            f"(nodes: {', '.join(names)})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    configure_logging(settings.logging)
    from cti.record import record  # noqa: PLC0415 -- lazy, like `run`

    try:
        return asyncio.run(record(settings, args.output, node=args.node, duration=args.duration))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dialplan(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    settings = _load(path)
    if settings is None:
        return EXIT_CONFIG
    from cti.dialplan.dialstrings import DialplanError  # noqa: PLC0415 -- lazy, like `run`
    from cti.dialplan.generate import generate_dialplan, generate_queues  # noqa: PLC0415

    generate = generate_queues if args.queues else generate_dialplan
    try:
        text = generate(settings.numberplan, settings.dialplan, source=str(path))
    except DialplanError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check is not None:
        return _check_generated(args.check, text)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    # write-then-rename: Asterisk reloading meanwhile never reads half a file
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.output)
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _check_generated(file: Path, text: str) -> int:
    try:
        current = file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read {file}: {exc}", file=sys.stderr)
        return EXIT_DIFFERS
    if current == text:
        return EXIT_OK
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile=str(file),
        tofile="generated",
    )
    sys.stdout.writelines(diff)
    print(f"{file} differs from what `cti dialplan` generates; regenerate it", file=sys.stderr)
    return EXIT_DIFFERS

"""Load on the real testbed: what one call costs the daemon, at fixed call rates.

Usage: python benchmarks/load.py [--rates 5,10,20] [--seconds 20] [--talk 1] [--seats N]
                                 [--lost-after 20] [--warmup 3] [--variants V1,V2,...]
       python benchmarks/load.py --rates 20 --duration 1800 --rss-every 60
                                 [--profile-at 900 --profile-out daemon.txt]

--variants runs each rate once per variant, alternating, so their ratio comes from one run:
a configuration switch (VARIANTS below), or rev=REV (rev=main, rev=HEAD~1): the daemon of
that git revision (its `git archive`, run as the source tree) with the shipped configuration,
against `.` (this working tree). A/B of a code change: --variants rev=main,.,rev=main,.

Needs the testbed (scripts/testbed up: Asterisk 22 + Mosquitto on loopback) and no other
`cti run` on this host (it would take our held calls). Run it under the testbed's lock:

  flock -o /tmp/hotline-cti-realtests.lock .venv/bin/python benchmarks/load.py

For each rate, one after the other: a fresh `cti run` (config/cti.yaml with wrap-up 0, no
sticky agent, its own MQTT prefix and SQLite database, the embedded ticket backend) with
enough Local auto-answer seats for the rate (Local/<id>@seats answer 0.5 s after ringing;
default ceil(rate * (talk + 1.5)) + 5 of them), all logged in ready over MQTT. Calls are
originated as Local/12345@cti-inbound at the rate for --seconds; each answered call is hung
up --talk s after its answer, one not answered within --lost-after s is hung up and lost.
The machinery (the AMI driver, the MQTT pop watcher, /proc sampling) is benchmarks/e2e.py's.

The long run (issue 12's "a 30-minute run at 20 calls/s shows flat RSS"): --duration S is
--seconds without its 60 s cap (one rate, up to an hour); --rss-every N samples the daemon's
VmRSS and CPU every N s and prints a second table (one row a sample: RSS, the CPU ms per call
offered in that interval, calls offered so far) and the RSS slope of the first five minutes
against the last five (least squares, MB/min). --profile-at S runs `py-spy record --gil
--rate 100 --duration 60 --format raw` on the daemon S s into the run, into --profile-out
(py-spy from this interpreter's bin/ or PATH: `pip install py-spy`).

Columns (docs/performance.md says more):
  offer/answ/lost  calls originated / answered by a seat / not answered in --lost-after
  tickets dup      tickets in the daemon's database whose creating call is one of ours, and
                   how many of those are a second (third...) ticket for the same call
  CPU ms/call      the daemon's utime+stime (all its threads: /proc/<pid>/stat) over the
                   steady window (--warmup s after the first originate to the last one),
                   divided by the calls offered in that window
  CPU%             the same window's daemon CPU, 100 = one core; ast% is Asterisk's
  RSS MB           the daemon's peak VmRSS during the run
  pop ms           the seat's answer (DialEnd ANSWER, Asterisk's Timestamp) to the "answer"
                   screen-pop for the call, as received on MQTT here
  hold->ring ms    the call entering cti-hold to the seat's DialBegin (Asterisk's clock)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from benchmarks._machine import machine_line, version_of
from benchmarks.e2e import (
    Bench,
    Call,
    Daemon,
    ProcSampler,
    asterisk_pid,
    clean_up,
    other_daemons,
    pct,
    print_table,
    settle_seats,
    start,
    tmpdir,
)
from cti.adapters.ami import AmiError
from tests.conftest import PROJECT
from tests.real.daemon_harness import write_config

SEAT_BASE = 5000  # seat ids 5000, 5001, ...: digits, for the testbed's `[seats] _X!`
ANSWER_DELAY_S = 0.5  # the testbed seats' Wait(0.5) before Answer()


def seats_for(rate: float, talk: float) -> int:
    """Seats busy at once = rate x (ringing + talk + hang-up) plus a margin, so a call never
    waits for a seat: the run measures the daemon, not a shortage of agents."""
    return math.ceil(rate * (talk + ANSWER_DELAY_S + 1.0)) + 5


# --variants: name -> (event_loop, ami.drop_unread_events, ami.filter_on_server)
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "asyncio+parse-all": ("asyncio", False, False),
    "asyncio": ("asyncio", True, False),
    "uvloop": ("uvloop", True, False),
    "asyncio+server-filter": ("asyncio", True, True),  # the shipped configuration
}


class LoadDaemon(Daemon):
    """e2e's daemon with `n` generated seats instead of the plan's five: seat i has the
    skills, team and languages of the plan's seat i mod 5, so the shipped number plan (whose
    lines and overflow steps name those skills and teams) stays valid and routes as shipped."""

    def __init__(
        self, tmp: Path, bench: Bench, n: int, variant: str = "", source: Path | None = None
    ) -> None:
        super().__init__(tmp, bench)
        self.source = source
        plan = yaml.safe_load((PROJECT / "config" / "cti.yaml").read_text(encoding="utf-8"))
        models = plan["numberplan"]["seats"]
        seats = [
            models[i % len(models)]
            | {"id": str(SEAT_BASE + i), "endpoint": f"Local/{SEAT_BASE + i}@seats"}
            for i in range(n)
        ]
        self.seat_ids = [str(s["id"]) for s in seats]
        self.config, self.prefix = write_config(
            tmp, seats=seats, queue={"wrapup_s": 0, "sticky_window_s": 0}
        )
        if variant in VARIANTS:  # issue 12's switches, A/B within one run
            data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
            loop, drop, on_server = VARIANTS[variant]
            data["event_loop"] = loop
            data["ami"]["drop_unread_events"] = drop
            data["ami"]["filter_on_server"] = on_server
            self.config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@dataclass
class Row:
    rate: float
    seats: int
    calls: list[Call]
    tickets: int
    duplicates: int
    cpu_ms_per_call: float | None
    cpu_pct: float | None
    ast_pct: float | None
    rss_mb: float
    note: str = ""
    variant: str = ""
    # --rss-every: (s since the first originate, VmRSS kB, CPU s in the interval, offered)
    series: list[tuple[float, int, float, int]] = field(default_factory=list)


def count_tickets(db: Path, call_ids: set[str]) -> tuple[int, int]:
    """(tickets created by one of `call_ids`, how many of them repeat a call's ticket)."""
    if not db.exists():
        return 0, 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT call_ids FROM tickets").fetchall()
    finally:
        con.close()
    firsts: list[str] = []
    for (raw,) in rows:
        with contextlib.suppress(ValueError, TypeError, IndexError):
            # a ticket's call ids are "<node>:<linkedid>" (cti/calls/ids.py)
            first = str(json.loads(raw)[0]).split(":", 1)[-1]
            if first in call_ids:
                firsts.append(first)
    return len(firsts), len(firsts) - len(set(firsts))


async def settled_tickets(db: Path, call_ids: set[str], timeout: float = 10.0) -> tuple[int, int]:
    """The ticket count once the outbox has drained: the same for 1.5 s (or `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = (-1, -1), time.monotonic()
    while time.monotonic() < deadline:
        now = count_tickets(db, call_ids)
        if now != last:
            last, since = now, time.monotonic()
        elif now[0] >= len(call_ids) or time.monotonic() - since >= 1.5:
            break
        await asyncio.sleep(0.25)
    return last


async def steady_cpu(pids: dict[str, int], start: float, end: float) -> dict[str, float]:
    """CPU seconds of each pid between the monotonic times `start` and `end`."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu0 = {k: ProcSampler.cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    wall = time.monotonic() - t0
    out = {f"{k}_s": ProcSampler.cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
    out["wall"] = wall
    return out


async def rss_series(
    pid: int, bench: Bench, t0: float, every: float, out: list[tuple[float, int, float, int]]
) -> None:
    """Every `every` s until cancelled: the daemon's VmRSS and its CPU since the last sample."""
    cpu = ProcSampler.cpu_seconds(pid)
    out.append((0.0, ProcSampler.rss_kb(pid), 0.0, len(bench.calls)))
    n = 1
    while True:
        await asyncio.sleep(max(0.0, t0 + n * every - time.monotonic()))
        n += 1
        with contextlib.suppress(OSError):
            now = ProcSampler.cpu_seconds(pid)
            out.append(
                (time.monotonic() - t0, ProcSampler.rss_kb(pid), now - cpu, len(bench.calls))
            )
            cpu = now


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def profile(pid: int, at: float, out: Path) -> str:
    """py-spy's 60 s raw (collapsed-stack) profile of `pid`, `at` s from now; its last line."""
    exe = py_spy()
    if exe is None:
        return "py-spy not found (pip install py-spy)"
    await asyncio.sleep(at)
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "--gil", "--rate", "100", "--duration", "60", "--format", "raw",
        "--nonblocking", "--pid", str(pid), "-o", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    text, _ = await proc.communicate()
    tail = text.decode(errors="replace").strip().splitlines()
    return f"py-spy exit {proc.returncode}: {tail[-1] if tail else ''}"


def git_tree(rev: str, into: Path) -> Path:
    """The source tree of git revision `rev` (`git archive`, no worktree registered)."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def run_rate(
    bench: Bench,
    rate: float,
    tmp: Path,
    args: argparse.Namespace,
    variant: str = "",
    source: Path | None = None,
) -> Row:
    bench.calls = {}
    bench.hold_context = "cti-hold"
    n_seats = args.seats or seats_for(rate, args.talk)
    daemon = LoadDaemon(tmp, bench, n_seats, variant, source)
    try:
        await daemon.start()
        assert daemon.proc is not None
        pids = {"cti": daemon.proc.pid, "asterisk": asterisk_pid()}
        sampler = ProcSampler(pids)  # peak RSS over the whole run
        sampler.start()
        t0 = time.monotonic()
        window = asyncio.create_task(steady_cpu(pids, t0 + args.warmup, t0 + args.seconds))
        series: list[tuple[float, int, float, int]] = []
        side = []
        if args.rss_every:
            side.append(
                asyncio.create_task(rss_series(pids["cti"], bench, t0, args.rss_every, series))
            )
        spy = None
        if args.profile_out:
            spy = asyncio.create_task(profile(pids["cti"], args.profile_at, args.profile_out))
        await bench.drive("cti-inbound", rate)
        cpu = await window
        sampler.stop()
        for t in side:
            t.cancel()
        spied = await spy if spy is not None else ""
        ours = set(bench.calls)
        tickets, dup = await settled_tickets(tmp / "cti.db", ours)
        errors = daemon.count(lambda r: r.get("level") in {"error", "critical"})
        steady_calls = rate * cpu["wall"]
        per_call = 1000 * cpu["cti_s"] / steady_calls if steady_calls > 0 else None
        calls = list(bench.calls.values())
        return Row(
            rate=rate,
            seats=n_seats,
            calls=calls,
            tickets=tickets,
            duplicates=dup,
            cpu_ms_per_call=per_call,
            cpu_pct=100 * cpu["cti_s"] / cpu["wall"],
            ast_pct=100 * cpu["asterisk_s"] / cpu["wall"],
            rss_mb=sampler.rss_peak_kb.get("cti", 0) / 1024,
            note=(variant + ": " if variant else "")
            + f"{errors} error logs, {sum(c.fallback for c in calls)} fallback"
            + (f"; {spied}" if spied else ""),
            series=series,
            variant=variant,
        )
    finally:
        await bench.hang_up_mine()
        await daemon.stop()
        await settle_seats(bench)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render(rows: list[Row]) -> list[str]:
    left = (
        f"{'rate/s':>6} {'seats':>5} {'offer':>5} {'answ':>5} {'lost':>4} {'tickets':>7} "
        f"{'dup':>3} {'CPU ms/call':>11} {'CPU%':>5} {'ast%':>5} {'RSS MB':>6}"
    )
    head = f"{left} {'pop ms':>11} {'hold->ring ms':>13}"
    sub = f"{'':>{len(left)}} {'p50':>5} {'p99':>5} {'p50':>6} {'p99':>6}"
    out = [head, sub]
    for r in rows:
        answered = [c for c in r.calls if c.answered is not None and not c.lost]
        ring = [c.ring - c.hold for c in answered if c.ring is not None and c.hold is not None]
        pop = [c.popped - c.answered for c in answered if c.popped and c.answered]
        no_pop = len(answered) - len(pop)
        note = r.note + (f", {no_pop} answered without an answer pop" if no_pop else "")
        out.append(
            f"{r.rate:>6g} {r.seats:>5} {len(r.calls):>5} {len(answered):>5} "
            f"{sum(c.lost for c in r.calls):>4} {r.tickets:>7} {r.duplicates:>3} "
            f"{_f(r.cpu_ms_per_call):>11} {_f(r.cpu_pct, 0):>5} {_f(r.ast_pct, 0):>5} "
            f"{r.rss_mb:>6.0f} {_ms(pct(pop, 50)):>5} {_ms(pct(pop, 99)):>5} "
            f"{_ms(pct(ring, 50)):>6} {_ms(pct(ring, 99)):>6}  ({note})"
        )
    return out


def slope_mb_per_min(points: list[tuple[float, int, float, int]]) -> float | None:
    """Least-squares slope of VmRSS over time, MB per minute (None under two points)."""
    if len(points) < 2:
        return None
    xs = [p[0] / 60 for p in points]
    ys = [p[1] / 1024 for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else None


def render_series(row: Row, every: float) -> list[str]:
    """--rss-every's table: one line a sample, then the first and last five minutes' slope."""
    out = [
        f"RSS over the run ({row.rate:g} calls/s{', ' + row.variant if row.variant else ''})",
        f"{'min':>6} {'RSS MB':>7} {'CPU ms/call':>11} {'offered':>7}",
    ]
    prev = 0
    for t, rss, cpu, offered in row.series:
        calls = offered - prev
        per = f"{1000 * cpu / calls:.1f}" if calls and t else "-"
        out.append(f"{t / 60:>6.1f} {rss / 1024:>7.1f} {per:>11} {offered:>7}")
        prev = offered
    if row.series:
        end = row.series[-1][0]
        first = [p for p in row.series if p[0] <= 300 + every / 2]
        last = [p for p in row.series if p[0] >= end - 300 - every / 2]
        for name, ps in (("first 5 min", first), ("last 5 min", last)):
            mean = sum(p[1] for p in ps) / len(ps) / 1024
            out.append(f"{name}: mean {mean:.1f} MB, slope {_f(slope_mb_per_min(ps), 2)} MB/min")
        out.append(f"whole run: slope {_f(slope_mb_per_min(row.series), 3)} MB/min")
    return out


async def main(args: argparse.Namespace) -> int:
    others = other_daemons()
    if others:
        print(f"another `cti run` is running (pids {others}): it would take our calls; stop it")
        return 2
    machine = machine_line()  # before the run: the load average is the machine's, not ours
    bench = Bench(args)
    runners = start(bench)
    rows: list[Row] = []
    version = "?"
    aborted = ""
    # bounded: every rate's run, its daemon's start and stop, and the stragglers' deadline
    budget = len(args.variants) * sum(
        args.seconds + args.lost_after + args.talk + 60 for _ in args.rates
    )
    try:
        async with asyncio.timeout(budget):
            await bench.ami.wait_connected(10)
            settings = await bench.ami.action({"Action": "CoreSettings"})
            version = str(settings.response.get("AsteriskVersion", "?"))
            ast_pid = asterisk_pid()
            with tmpdir() as tmp:
                sources = {
                    v: git_tree(v.removeprefix("rev="), tmp / f"src{i}")
                    for i, v in enumerate(dict.fromkeys(args.variants))
                    if v.startswith("rev=")
                }
                runs = [(r, v) for r in args.rates for v in args.variants]
                for i, (rate, variant) in enumerate(runs):
                    print(f"... rate {rate:g}/s {variant}", file=sys.stderr, flush=True)
                    sub = tmp / f"run{i}"
                    sub.mkdir()
                    row = await run_rate(bench, rate, sub, args, variant, sources.get(variant))
                    if asterisk_pid() != ast_pid:
                        msg = "Asterisk was restarted during the run"
                        raise AmiError("bench", msg)  # noqa: TRY301 - one abort path
                    rows.append(row)
    except (AmiError, TimeoutError, OSError, subprocess.CalledProcessError) as exc:
        aborted = f"ABORTED: {exc!r}; rows measured before it are below, the rest discarded"
    finally:
        await clean_up(bench, runners)
    print(machine)
    print(
        f"Asterisk {version}; aiomqtt {version_of('aiomqtt')}; SQLAlchemy "
        f"{version_of('sqlalchemy')}; seats Local/<id>@seats (answer after 0.5 s), wrap-up 0; "
        f"{args.seconds:g} s per rate, talk {args.talk:g} s, steady window from "
        f"{args.warmup:g} s, lost after {args.lost_after:g} s; embedded tickets"
    )
    lines = render(rows)
    for row in rows:
        if row.series:
            lines += ["", *render_series(row, args.rss_every)]
    return print_table(lines, aborted)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rates", default="5,10,20", help="calls per second, comma-separated")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of originating per rate")
    p.add_argument("--talk", type=float, default=1.0, help="seconds from answer to hang-up")
    p.add_argument("--seats", type=int, default=0, help="seats (0: enough for each rate)")
    p.add_argument("--lost-after", type=float, default=20.0, help="unanswered after this: lost")
    p.add_argument("--warmup", type=float, default=3.0, help="s before the steady CPU window")
    p.add_argument(
        "--variants",
        default="",
        help="each rate once per variant, comma-separated: "
        + ", ".join(VARIANTS)
        + ", rev=REV (that git revision's daemon) or . (this tree as shipped)"
        + " (default: the shipped configuration)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="the long run: --seconds without its 60 s cap (one rate, up to 3600 s)",
    )
    p.add_argument("--rss-every", type=float, default=0.0, help="sample RSS and CPU every N s")
    p.add_argument("--profile-at", type=float, default=0.0, help="py-spy the daemon at S s")
    p.add_argument("--profile-out", type=Path, default=None, help="py-spy's raw output file")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v] or [""]
    if any(
        v not in {"", "."} and v not in VARIANTS and not v.startswith("rev=") for v in args.variants
    ):
        p.error(f"--variants: one of {', '.join(VARIANTS)}, rev=REV, .")
    args.rates = [float(r) for r in args.rates.split(",") if r]
    if not args.rates or any(r <= 0 or r > 60 for r in args.rates):
        p.error("--rates must be in (0, 60] calls/s")
    if args.duration:
        if not 0 < args.duration <= 3600 or len(args.rates) != 1:
            p.error("--duration must be in (0, 3600] s, with one rate")
        args.seconds = args.duration
    elif not 0 < args.seconds <= 60:
        p.error("--seconds must be in (0, 60]")
    if args.rss_every < 0 or (args.rss_every and args.rss_every < 1):
        p.error("--rss-every must be 0 (off) or >= 1 s")
    if args.profile_out is not None and not 0 <= args.profile_at <= args.seconds - 60:
        p.error("--profile-at must leave py-spy's 60 s inside the run")
    if not 0 <= args.warmup < args.seconds - 1:
        p.error("--warmup must leave at least 1 s of steady window in --seconds")
    if not 0 <= args.seats <= 200 or not 0 < args.talk <= 30 or not 0 < args.lost_after <= 60:
        p.error("--seats in [0, 200], --talk in (0, 30], --lost-after in (0, 60]")
    args.duration = args.seconds  # the name e2e's Bench reads
    return args


def _run() -> int:
    return asyncio.run(main(parse_args()))


if __name__ == "__main__":
    sys.exit(_run())

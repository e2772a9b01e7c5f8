"""Faults on the real testbed, with calls flowing: what each one costs (issue 15).

Usage: python benchmarks/faults.py [--faults all|NAME,...] [--runs 3] [--rate 1] [--period 15]
                                   [--talk 1] [--lost-after 25] [--freeze-s 7] [--lock-s 8]
                                   [--full-s 8]

Needs the testbed (scripts/testbed up) and no other `cti run` on this host. Run it under the
testbed's lock, for the whole run (it restarts Asterisk and Mosquitto):

  flock -o /tmp/hotline-cti-realtests.lock .venv/bin/python benchmarks/faults.py

Per fault: one fresh `cti run` (benchmarks/load.py's daemon: generated Local auto-answer
seats, wrap-up 0, its own MQTT prefix and SQLite database, embedded tickets), calls
originated at --rate for --runs x --period s, the fault injected --at s into each period,
then --lost-after s for the last calls. Faults:

  asterisk-restart   scripts/testbed restart-asterisk
  asterisk-freeze    SIGSTOP Asterisk for --freeze-s (longer than the AMI ping deadline), SIGCONT
  daemon-kill        SIGKILL the daemon, start it again at once (systemd Restart=always)
  mosquitto-restart  SIGTERM Mosquitto (by its pidfile), scripts/testbed up starts it again
  db-lock            another process holds an exclusive SQLite lock on the daemon's database
                     for --lock-s
  disk-full          the daemon's database on a tmpfs of its own (needs root), filled to
                     ENOSPC for --full-s, then freed

Columns (docs/reliability.md says more):
  offered      calls originated (a call Asterisk refused while it was down is not offered)
  unansw       offered calls no seat answered within --lost-after (cut by the fault or lost)
  fallback     answered calls that went through the dialplan's fallback Queue()
  ghosts       channels of ours still up after every caller hung up, plus seats whose
               state topic is not `ready` afterwards
  pops lost    calls a daemon seat answered without an "answer" screen-pop seen on MQTT
  tkt lost/dup answered calls without a ticket in the daemon's database / second tickets
  recover      the fault's end (SIGCONT, the restart command's return, the unlock, the
               space freed) to /readyz 200 again, p50 and max over the runs; for
               daemon-kill, from the kill
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt
import httpx

from benchmarks._machine import machine_line, version_of
from benchmarks.e2e import (
    TESTBED_ROOT,
    Bench,
    Call,
    asterisk_pid,
    clean_up,
    other_daemons,
    pct,
    print_table,
    settle_seats,
    start,
    tmpdir,
)
from benchmarks.load import LoadDaemon, count_tickets, seats_for, settled_tickets
from cti.adapters.ami import AmiClient, AmiError
from tests.conftest import MQTT_HOST, MQTT_LOGIN, MQTT_PORT, PROJECT, bed_node, unique
from tests.real.daemon_harness import spawn_daemon

FAULTS = (
    "asterisk-restart",
    "asterisk-freeze",
    "daemon-kill",
    "mosquitto-restart",
    "db-lock",
    "disk-full",
)
TESTBED = PROJECT / "scripts" / "testbed"
MOSQUITTO_PIDFILE = TESTBED_ROOT.parent / "mosquitto.pid"


@dataclass
class Row:
    fault: str
    runs: int
    calls: list[Call]
    ghosts: int
    pops_lost: int
    tickets_lost: int
    duplicates: int
    recover: list[float]
    note: str = ""


class FaultDaemon(LoadDaemon):
    """load.py's daemon, whose MQTT watcher reconnects (Mosquitto restarts under it) and
    whose process can be SIGKILLed and started again with the same config and database."""

    earlier_logs: list[dict[str, object]]
    peak_pending = 0.0  # disk-full: rows in memory at the end of the full spell

    async def start(self) -> None:
        self.earlier_logs = []
        self._tasks.append(asyncio.create_task(self._mqtt_forever(), name="bench.mqtt"))
        await self._spawn()
        for seat in self.seat_ids:
            await self.login(seat)
        await self.wait(
            lambda: all(self.seat_status.get(s) == "ready" for s in self.seat_ids),
            20,
            "seats ready",
        )

    async def _spawn(self) -> None:
        self.earlier_logs += self.logs  # the killed process's, for --logs
        self.logs = []
        self.proc = await spawn_daemon(self.config)
        self._tasks.append(asyncio.create_task(self._read_logs(), name="bench.daemon_logs"))
        await self.wait(
            lambda: self.logged("ami_node_up") and self.logged("http_listening"), 30, "daemon up"
        )

    async def _mqtt_forever(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    MQTT_HOST, MQTT_PORT, identifier=unique("bench"), **MQTT_LOGIN
                ) as client:
                    self.mqtt = client
                    await client.subscribe(f"{self.prefix}/seats/+/#", qos=1)
                    await self._read_mqtt()
            except aiomqtt.MqttError:
                self.mqtt = None
                await asyncio.sleep(0.5)

    async def login(self, seat: str) -> None:
        await self.wait(lambda: self.mqtt is not None, 10, "bench MQTT connected")
        await super().login(seat)

    async def kill_and_restart(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        await self._spawn()

    def url(self) -> str:
        up = [r for r in self.logs if r.get("event") == "http_listening"][-1]
        return f"http://{up['host']}:{up['port']}"

    async def stop(self) -> None:
        self.mqtt = None
        await super().stop()


async def until_ready(daemon: FaultDaemon, timeout: float = 60.0) -> float:
    """Seconds until /readyz says 200 (the daemon may be restarting: its URL is re-read)."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(httpx.HTTPError, IndexError):
                if (await http.get(daemon.url() + "/readyz")).status_code == 200:
                    return time.monotonic() - t0
            await asyncio.sleep(0.2)
    return float("inf")


def _testbed(*argv: str) -> None:
    subprocess.run([str(TESTBED), *argv], check=True, capture_output=True, timeout=120)


async def inject(fault: str, daemon: FaultDaemon, db: Path, args: argparse.Namespace) -> float:
    """Run one fault; returns the seconds from its end until the daemon is ready again."""
    if fault == "asterisk-restart":
        await asyncio.to_thread(_testbed, "restart-asterisk")
    elif fault == "asterisk-freeze":
        pid = asterisk_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(args.freeze_s)
        finally:
            os.kill(pid, signal.SIGCONT)
    elif fault == "daemon-kill":
        t0 = time.monotonic()
        await daemon.kill_and_restart()
        return time.monotonic() - t0 + await until_ready(daemon)
    elif fault == "mosquitto-restart":
        pid = int(MOSQUITTO_PIDFILE.read_text(encoding="ascii").strip())
        os.kill(pid, signal.SIGTERM)
        # wait for it to be gone: `up` would take a Mosquitto still shutting down as running
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(_testbed, "up")
    elif fault == "disk-full":
        filler = await asyncio.to_thread(fill, db.parent)
        try:
            await asyncio.sleep(args.full_s)
            daemon.peak_pending = max(
                daemon.peak_pending, (await scrape(daemon)).get("cti_call_records_pending", 0)
            )
        finally:
            filler.unlink()
    elif fault == "db-lock":
        locker = sqlite3.connect(db, timeout=5, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # another process holds the whole database
            await asyncio.sleep(args.lock_s)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
    else:  # pragma: no cover - parse_args refuses it
        raise ValueError(fault)
    return await until_ready(daemon)


def fill(disk: Path) -> Path:
    """Write a file on `disk` until ENOSPC; returns it (unlink it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


async def scrape(daemon: FaultDaemon) -> dict[str, float]:
    """The daemon's unlabelled /metrics samples (labelled ones keep their labels)."""
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(daemon.url() + "/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


@contextlib.contextmanager
def own_disk(where: Path, fault: str, size: str = "64m") -> Iterator[None]:
    """disk-full: a tmpfs of `size` mounted on the run's directory (the daemon's database
    and configuration live there); other faults: nothing."""
    if fault != "disk-full":
        yield
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


class FaultBench(Bench):
    """e2e's bench; a call Asterisk cannot take (AMI down: restarted, frozen) is not
    offered: it is dropped from the run, not counted as unanswered.

    The bench plays the callers and watches: its AMI link must not give up on a frozen
    Asterisk the way the daemon's does (ping deadline), or it would miss the answers and
    hang-ups that happen the moment Asterisk runs again (counted as unanswered calls and
    ghosts of the bench's own making), and its callers' hang-ups sent during the freeze
    would be lost. Its pings and actions wait out the freeze instead."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        patient = args.freeze_s + 10.0
        self.ami = AmiClient(
            bed_node(name="bench", ping_timeout=patient, action_timeout=patient), self.events
        )

    async def hang_up(self, uid: str) -> None:
        # a caller hanging up during a freeze: Asterisk sees it when it runs again
        with contextlib.suppress(Exception):
            await self.ami.action(
                {"Action": "Hangup", "Channel": uid},
                check=False,
                timeout=self.args.freeze_s + 10.0,
            )

    async def originate(self, exten_context: str, i: int) -> None:
        try:
            await super().originate(exten_context, i)
        except AmiError:
            # the newest call without any event is the one just refused
            fresh = [c for c in self.calls.values() if c.hold is None and c.ring is None]
            if fresh:
                call = max(fresh, key=lambda c: c.originated)
                # its customer task just waits out --lost-after; the call is not counted
                self.calls.pop(call.uid, None)


async def run_fault(bench: Bench, fault: str, tmp: Path, args: argparse.Namespace) -> Row:
    bench.calls = {}
    bench.hold_context = "cti-hold"
    n_seats = seats_for(args.rate, args.talk)
    daemon = FaultDaemon(tmp, bench, n_seats)
    recover: list[float] = []
    notes: list[str] = []
    try:
        await daemon.start()
        traffic = asyncio.create_task(bench.drive("cti-inbound", args.rate))
        t0 = time.monotonic()
        for run in range(args.runs):
            await asyncio.sleep(max(0.0, t0 + run * args.period + args.at - time.monotonic()))
            print(f"... {fault} run {run + 1}/{args.runs}", file=sys.stderr, flush=True)
            recover.append(await inject(fault, daemon, tmp / "cti.db", args))
        await traffic
        await asyncio.sleep(2.0)  # hang-ups reach the daemon and the seats' wrap-up (0) ends
        ghosts = await bench.hang_up_mine()
        await asyncio.sleep(1.0)
        ghosts += sum(1 for s in daemon.seat_ids if daemon.seat_status.get(s) != "ready")
        answered = {uid for uid, c in bench.calls.items() if c.answered and not c.lost}
        tickets, dup = await settled_tickets(tmp / "cti.db", answered, timeout=15)
        with_ticket = count_tickets(tmp / "cti.db", answered)[0] - dup
        calls = list(bench.calls.values())
        served = [c for c in calls if c.answered and not c.lost and not c.fallback]
        # a call answered while the daemon was dead gets its pop late (call.late): the
        # answer pop if it is still up at the restart, else a reconstructed end pop
        pops_lost = sum(1 for c in served if not c.popped and not c.popped_late)
        late = sum(1 for c in served if c.popped_late)
        if late:
            notes.append(f"{late} pops late")
        if args.logs is not None:
            _keep_logs(args.logs, fault, daemon, calls)
        if fault == "disk-full":
            m = await scrape(daemon)
            dropped = m.get("cti_call_records_dropped_total", -1)
            poisoned = sum(v for k, v in m.items() if k.startswith("cti_call_records_poisoned"))
            notes.append(
                f"{daemon.peak_pending:.0f} rows in memory at the free, "
                f"{dropped:.0f} dropped, {poisoned:.0f} poisoned"
            )
        errors = daemon.count(lambda r: r.get("level") in {"error", "critical"})
        notes.append(f"{errors} error logs")
        if daemon.proc is not None and daemon.proc.returncode is not None:
            notes.append(f"daemon exited {daemon.proc.returncode}")
        return Row(
            fault=fault,
            runs=args.runs,
            calls=calls,
            ghosts=ghosts,
            pops_lost=pops_lost,
            tickets_lost=len(answered) - with_ticket if tickets >= 0 else len(answered),
            duplicates=dup,
            recover=recover,
            note=", ".join(notes),
        )
    finally:
        await bench.hang_up_mine()
        await daemon.stop()
        await settle_seats(bench)


def _keep_logs(where: Path, fault: str, daemon: FaultDaemon, calls: list[Call]) -> None:
    """--logs: the daemon's log records and each call's measured facts, one JSON a line."""
    where.mkdir(parents=True, exist_ok=True)
    with (where / f"{fault}.daemon.jsonl").open("w", encoding="utf-8") as f:
        for r in [*daemon.earlier_logs, *daemon.logs]:
            f.write(json.dumps(r, default=str) + "\n")
    with (where / f"{fault}.calls.jsonl").open("w", encoding="utf-8") as f:
        for c in calls:
            facts = {k: getattr(c, k) for k in ("uid", "originated", "hold", "ring", "answered")}
            facts |= {k: getattr(c, k) for k in ("popped", "popped_late", "fallback", "lost")}
            f.write(json.dumps(facts) + "\n")


def _s(v: float | None) -> str:
    return "-" if v is None else ("inf" if v == float("inf") else f"{v:.1f}")


def render(rows: list[Row]) -> list[str]:
    head = (
        f"{'fault':<17} {'runs':>4} {'offered':>7} {'unansw':>6} {'fallback':>8} "
        f"{'ghosts':>6} {'pops lost':>9} {'tkt lost':>8} {'dup':>3} {'recover s p50':>13} "
        f"{'max':>5}"
    )
    out = [head]
    for r in rows:
        unanswered = sum(1 for c in r.calls if c.lost or not c.answered)
        fallback = sum(1 for c in r.calls if c.answered and c.fallback)
        out.append(
            f"{r.fault:<17} {r.runs:>4} {len(r.calls):>7} {unanswered:>6} {fallback:>8} "
            f"{r.ghosts:>6} {r.pops_lost:>9} {r.tickets_lost:>8} {r.duplicates:>3} "
            f"{_s(pct(r.recover, 50)):>13} {_s(max(r.recover, default=None)):>5}"
            + (f"  ({r.note})" if r.note else "")
        )
    return out


async def main(args: argparse.Namespace) -> int:
    others = other_daemons()
    if others:
        print(f"another `cti run` is running (pids {others}): it would take our calls; stop it")
        return 2
    machine = machine_line()
    bench = FaultBench(args)
    runners = start(bench)
    rows: list[Row] = []
    aborted = ""
    budget = sum(args.runs * args.period + args.lost_after + 90 for _ in args.faults)
    try:
        async with asyncio.timeout(budget):
            await bench.ami.wait_connected(10)
            with tmpdir() as tmp:
                for i, fault in enumerate(args.faults):
                    sub = tmp / f"run{i}"
                    sub.mkdir()
                    with own_disk(sub, fault):
                        rows.append(await run_fault(bench, fault, sub, args))
                    await bench.ami.wait_connected(30)
    except (AmiError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        aborted = f"ABORTED: {exc!r}; rows measured before it are below, the rest discarded"
    finally:
        await clean_up(bench, runners)
    print(machine)
    print(
        f"aiomqtt {version_of('aiomqtt')}; {args.rate:g} calls/s for {args.runs} x "
        f"{args.period:g} s per fault (fault at +{args.at:g} s), talk {args.talk:g} s, "
        f"unanswered after {args.lost_after:g} s; freeze {args.freeze_s:g} s, "
        f"lock {args.lock_s:g} s, disk full {args.full_s:g} s; generated Local seats, wrap-up 0"
    )
    return print_table(render(rows), aborted)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--faults", default="all", help="all, or some of: " + ",".join(FAULTS))
    p.add_argument("--runs", type=int, default=3, help="each fault this many times")
    p.add_argument("--rate", type=float, default=1.0, help="calls per second, steady")
    p.add_argument("--period", type=float, default=15.0, help="seconds of traffic per run")
    p.add_argument("--at", type=float, default=3.0, help="the fault this far into a period, s")
    p.add_argument("--talk", type=float, default=1.0, help="seconds from answer to hang-up")
    p.add_argument("--lost-after", type=float, default=25.0, help="unanswered after this, s")
    p.add_argument("--freeze-s", type=float, default=7.0, help="SIGSTOP this long, s")
    p.add_argument("--lock-s", type=float, default=8.0, help="hold the SQLite lock this long")
    p.add_argument("--full-s", type=float, default=8.0, help="keep the disk full this long")
    p.add_argument("--logs", type=Path, default=None, help="keep daemon logs and calls here")
    args = p.parse_args(argv)
    names = FAULTS if args.faults == "all" else tuple(f for f in args.faults.split(",") if f)
    unknown = sorted(set(names) - set(FAULTS))
    if unknown or not names:
        p.error(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    args.faults = list(names)
    if not 1 <= args.runs <= 20:
        p.error("--runs must be in [1, 20]")
    if not 0 < args.rate <= 20:
        p.error("--rate must be in (0, 20] calls/s")
    if not 5 <= args.period <= 120 or not 0 <= args.at < args.period:
        p.error("--period in [5, 120] s, --at in [0, --period)")
    if not 0 < args.talk <= 30 or not 0 < args.lost_after <= 120:
        p.error("--talk in (0, 30], --lost-after in (0, 120]")
    if not 0 < args.freeze_s <= 60 or not 0 < args.lock_s <= 60 or not 0 < args.full_s <= 60:
        p.error("--freeze-s, --lock-s and --full-s in (0, 60]")
    args.duration = args.runs * args.period  # the name e2e's Bench reads
    return args


def _run() -> int:
    return asyncio.run(main(parse_args()))


if __name__ == "__main__":
    sys.exit(_run())

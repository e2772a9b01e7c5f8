"""End to end on the real testbed: the daemon's queue vs plain Asterisk Queue(), same seats.

Usage: python benchmarks/e2e.py [--rates 1,2,5] [--duration 20] [--talk 2] [--lost-after 30]
                                [--paths daemon,queue]

Needs the testbed (scripts/testbed up: Asterisk 22 + Mosquitto on loopback). For each call
rate it runs, one after the other, with the plan's five Local auto-answer seats (1001-1004,
2001 -> Local/<id>@seats, which answer 0.5 s after they start ringing):

  daemon  a fresh `cti run` process (config/cti.yaml with wrap-up 0, its own MQTT prefix and
          database); the seats log in ready over MQTT; calls are originated as
          Local/12345@cti-inbound, held in `cti-hold`, Redirected by the daemon to
          `cti-connect,<seat>,1`.
  queue   no daemon: calls are originated as Local/12345@queue-in, which runs
          Queue(support); the same five seats are added to `support` (QueueAdd) for the run
          and removed after. `support` has the settings of the generated `cti-general`
          (rrmemory, ring timeout 15 s, ringinuse no) but wrap-up 0 like the daemon run.

Calls are originated at the rate for --duration seconds. Each answered call is hung up
(the customer's leg) --talk seconds after the answer; a call not answered within
--lost-after seconds of its originate is hung up and counted lost.

Columns (latencies of the answered calls, from Asterisk's own event Timestamps, one clock):
  hold->ring  entering the holding point (daemon: first Newexten in cti-hold; queue:
              QueueCallerJoin) to the seat's DialBegin (AgentCalled for the queue, if earlier)
  answer      entering the holding point to the seat's DialEnd ANSWER (includes the seats'
              0.5 s auto-answer delay)
  pop         daemon only: the seat's answer (DialEnd ANSWER, Asterisk's Timestamp) to
              the daemon's `seats/<seat>/pop` "answer" screen-pop for that call, as received
              by a subscriber here (AMI event -> pop on the agent's screen)
  fb          daemon only: calls that went to the dialplan's fallback Queue() (cti-fallback)
  CPU%        (utime+stime) / wall time over the load window (first originate to the last
              hang-up), from /proc/<pid>/stat; 100 = one core. RSS is the peak VmRSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt
import structlog
import yaml

from benchmarks._machine import machine_line, version_of
from cti.adapters.ami import AmiClient, AmiError, EventQueue
from cti.events import AmiEvent
from tests.conftest import MQTT_HOST, MQTT_LOGIN, MQTT_PORT, PROJECT, bed_node, unique
from tests.real.daemon_harness import spawn_daemon, stop_daemon_process, write_config

TESTBED_ROOT = Path(os.environ.get("CTI_TESTBED", "/var/tmp/hotline-cti-testbed")) / "root"
ASTERISK_PIDFILE = TESTBED_ROOT / "run" / "asterisk" / "asterisk.pid"
RECORDINGS = TESTBED_ROOT / "var" / "spool" / "asterisk" / "monitor" / "hotline-cti"
NUMBER = "12345"
BASELINE_QUEUE = "support"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- measuring


@dataclass
class Call:
    """One originated call: `uid` is the ChannelId of the customer's half (;1), which is
    also the call's Linkedid (and the daemon's call id)."""

    uid: str
    originated: float
    hold: float | None = None
    ring: float | None = None
    answered: float | None = None
    popped: float | None = None
    popped_late: float | None = None  # a late pop (after a daemon restart: call.late)
    fallback: bool = False
    lost: bool = False
    hung_up: bool = False
    answer_seen: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class ProcSampler:
    """CPU time and peak RSS of some pids, from /proc, over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._cpu0: dict[str, float] = {}
        self._t0 = 0.0
        self.cpu_pct: dict[str, float] = {}
        self.rss_peak_kb: dict[str, int] = dict.fromkeys(pids, 0)
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def cpu_seconds(pid: int) -> float:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        # the fields after the command name (which may hold spaces) start after ")"
        rest = stat.rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime, stime

    @staticmethod
    def rss_kb(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def _sample_rss(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.rss_peak_kb[name] = max(self.rss_peak_kb[name], self.rss_kb(pid))

    async def _loop(self) -> None:
        while True:
            self._sample_rss()
            await asyncio.sleep(0.25)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = {name: self.cpu_seconds(pid) for name, pid in self.pids.items()}
        self._task = asyncio.create_task(self._loop(), name="bench.sampler")

    def stop(self) -> None:
        wall = time.monotonic() - self._t0
        self._sample_rss()
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.cpu_pct[name] = 100 * (self.cpu_seconds(pid) - self._cpu0[name]) / wall
        if self._task is not None:
            self._task.cancel()


def asterisk_pid() -> int:
    return int(ASTERISK_PIDFILE.read_text(encoding="ascii").strip())


def other_daemons() -> list[int]:
    """pids of `cti run` processes already running: they would take our held calls too."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cti" in argv and b"run" in argv:
            found.append(int(d.name))
    return found


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without samples."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


# --------------------------------------------------------------------------- the bench


class Bench:
    """One AMI connection that originates calls and watches every event about them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.events = EventQueue(200_000)
        # the tests' 1 s Pong timeout made this client drop and resync over and over on a
        # loaded host (load 600), and a resync's CoreShowChannels then aborted the 30-minute
        # run (/tmp/perf3/long.out): the bench waits as long as a patient client would
        node = bed_node(name="bench", ping_timeout=5.0, action_timeout=10.0)
        self.ami = AmiClient(node, self.events)
        self.calls: dict[str, Call] = {}
        self.hold_context = "cti-hold"
        self.tasks: set[asyncio.Task[Any]] = set()
        self.mine: set[str] = set()  # every call id of this run, for the final cleanup

    # ------------------------------------------------------------------ AMI events

    async def consume(self) -> None:
        while True:
            ev = await self.events.get()
            if isinstance(ev, AmiEvent):
                self.on_event(ev)

    def on_event(self, ev: AmiEvent) -> None:
        h = ev.headers
        call = self.calls.get(h.get("Linkedid", "")) or self.calls.get(h.get("DestLinkedid", ""))
        if call is None:
            return
        name = ev.name
        if name == "Newexten":
            if h.get("Context") == self.hold_context and call.hold is None:
                call.hold = ev.time
            elif h.get("Context") == "cti-fallback":
                call.fallback = True
        elif name == "QueueCallerJoin" and self.hold_context == "queue" and call.hold is None:
            call.hold = ev.time
        elif name in {"DialBegin", "AgentCalled"} and "@seats-" in h.get("DestChannel", ""):
            if call.ring is None or ev.time < call.ring:
                call.ring = ev.time
        elif (
            name == "DialEnd"
            and h.get("DialStatus") == "ANSWER"
            and "@seats-" in h.get("DestChannel", "")
            and call.answered is None
        ):
            call.answered = ev.time
            call.answer_seen.set()
        elif name == "Hangup" and h.get("Uniqueid") == call.uid:
            call.gone.set()

    async def hang_up(self, uid: str) -> None:
        # Hangup finds a channel by name or by uniqueid; the customer's half has our ChannelId
        with contextlib.suppress(Exception):
            await self.ami.action({"Action": "Hangup", "Channel": uid}, check=False, timeout=5)

    async def hang_up_mine(self) -> int:
        """Hang up every channel still up that belongs to a call of this run."""
        res = await self.ami.action({"Action": "CoreShowChannels"}, timeout=10)
        left = [
            ev.headers["Channel"]
            for ev in res.items
            if isinstance(ev, AmiEvent) and ev.headers.get("Linkedid") in self.mine
        ]
        for chan in left:
            await self.ami.action({"Action": "Hangup", "Channel": chan}, check=False)
        return len(left)

    # ------------------------------------------------------------------ load

    async def originate(self, exten_context: str, i: int) -> None:
        uid, other = unique("e2e"), unique("e2eb")
        call = Call(uid=uid, originated=time.time())
        self.calls[uid] = call
        self.mine.add(uid)
        t = asyncio.create_task(self.life(call), name=f"bench.call.{uid}")
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        await self.ami.action(
            {
                "Action": "Originate",
                "Channel": f"Local/{NUMBER}@{exten_context}",
                "Context": "customer",
                "Exten": "s",
                "Priority": "1",
                "Async": "true",
                "ChannelId": uid,
                "OtherChannelId": other,
                "CallerID": f"<1390000{i:04d}>",
            },
            check=False,
        )

    async def life(self, call: Call) -> None:
        """The customer: waits up to --lost-after for an answer, talks --talk s, hangs up."""
        try:
            await asyncio.wait_for(call.answer_seen.wait(), self.args.lost_after)
        except TimeoutError:
            call.lost = True
        else:
            await asyncio.sleep(self.args.talk)
        await self.hang_up(call.uid)
        call.hung_up = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.gone.wait(), 5)

    async def drive(self, exten_context: str, rate: float) -> None:
        n = max(1, round(rate * self.args.duration))
        t0 = time.monotonic()
        senders = []
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            senders.append(asyncio.create_task(self.originate(exten_context, i)))
        await asyncio.gather(*senders)
        while self.tasks:
            await asyncio.gather(*list(self.tasks))


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """A `cti run` process with its own config, prefix and database, and an MQTT
    subscriber that notes when each call's "answer" screen-pop arrives."""

    def __init__(self, tmp: Path, bench: Bench) -> None:
        seats = yaml.safe_load((PROJECT / "config" / "cti.yaml").read_text(encoding="utf-8"))[
            "numberplan"
        ]["seats"]
        self.seat_ids = [str(s["id"]) for s in seats]
        self.config, self.prefix = write_config(
            tmp, seats=seats, queue={"wrapup_s": 0, "sticky_window_s": 0}
        )
        self.bench = bench
        self.source: Path | None = None  # another revision's tree to run (load.py --variants)
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[dict[str, Any]] = []
        self.replies: dict[str, dict[str, Any]] = {}
        self.seat_status: dict[str, str] = {}
        self.mqtt: aiomqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self.mqtt = aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=unique("bench"), **MQTT_LOGIN)
        await self.mqtt.__aenter__()
        await self.mqtt.subscribe(f"{self.prefix}/seats/+/#", qos=1)
        self._tasks.append(asyncio.create_task(self._read_mqtt(), name="bench.mqtt"))
        self.proc = await spawn_daemon(self.config, source=self.source)
        self._tasks.append(asyncio.create_task(self._read_logs(), name="bench.daemon_logs"))
        await self.wait(
            lambda: self.logged("ami_node_up") and self.logged("mqtt_connected"), 20, "daemon up"
        )
        for seat in self.seat_ids:
            await self.login(seat)
        await self.wait(
            lambda: all(self.seat_status.get(s) == "ready" for s in self.seat_ids),
            10,
            "seats ready",
        )

    async def login(self, seat: str) -> None:
        assert self.mqtt is not None
        for _ in range(5):  # the daemon may subscribe a moment after it logs mqtt_connected
            rid = unique("r")
            await self.mqtt.publish(
                f"{self.prefix}/seats/{seat}/cmd",
                json.dumps({"cmd": "login", "ready": True, "request_id": rid}),
                qos=1,
            )
            with contextlib.suppress(TimeoutError):
                await self.wait(lambda r=rid: r in self.replies, 2, f"reply {rid}")  # type: ignore[misc]
                if self.replies[rid].get("ok") is not True:
                    msg = f"login of seat {seat} refused: {self.replies[rid]}"
                    raise RuntimeError(msg)
                return
        msg = f"no reply to the login of seat {seat}"
        raise RuntimeError(msg)

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_daemon_process(self.proc)
        for t in self._tasks:
            t.cancel()
        if self.mqtt is not None:
            with contextlib.suppress(Exception):
                await self.mqtt.__aexit__(None, None, None)
            self.mqtt = None

    def logged(self, event: str) -> bool:
        return any(r.get("event") == event for r in self.logs)

    def count(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for r in self.logs if pred(r))

    async def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not cond():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            tail = [r.get("event") or r.get("line") for r in self.logs[-10:]]
            msg = f"timed out after {timeout} s waiting for {what}; daemon logs: {tail}"
            raise TimeoutError(msg) from None

    async def _read_logs(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            try:
                self.logs.append(json.loads(line))
            except ValueError:
                self.logs.append({"event": "unparsed", "line": line.decode(errors="replace")})
            self._changed.set()

    async def _read_mqtt(self) -> None:
        assert self.mqtt is not None
        async for m in self.mqtt.messages:
            now = time.time()
            topic = m.topic.value.removeprefix(self.prefix + "/")
            try:
                body = json.loads(m.payload) if isinstance(m.payload, bytes) else None
            except ValueError:
                continue
            if not isinstance(body, dict):
                continue
            parts = topic.split("/")
            if topic.endswith("/reply") and "request_id" in body:
                self.replies[str(body["request_id"])] = body
            elif topic.endswith("/state") and len(parts) == 3:
                self.seat_status[parts[1]] = str(body.get("status"))
            elif topic.endswith("/pop") and len(parts) == 3:
                inner = body.get("call")
                call_id = inner.get("call_id") if isinstance(inner, dict) else None
                call = self.bench.calls.get(str(call_id))
                if call is None:
                    pass
                elif isinstance(inner, dict) and inner.get("late") is True:
                    call.popped_late = call.popped_late or now
                    if body.get("type") == "answer" and call.popped is None:
                        call.popped = now
                elif body.get("type") == "answer" and call.popped is None:
                    call.popped = now
            self._changed.set()


# --------------------------------------------------------------------------- one run


@dataclass
class Row:
    rate: float
    path: str
    calls: list[Call]
    cpu: dict[str, float]
    rss_kb: dict[str, int]
    note: str = ""


def _fmt(v: float | None, scale: float = 1000, digits: int = 0) -> str:
    return "-" if v is None else f"{v * scale:.{digits}f}"


def render(rows: list[Row]) -> list[str]:
    head = (
        f"{'rate/s':>6} {'path':<6} {'offer':>5} {'answ':>5} {'lost':>4} {'fb':>3} "
        f"{'hold->ring ms':>15} {'answer ms':>11} {'pop ms':>11} "
        f"{'cti CPU%':>8} {'cti RSS MB':>10} {'ast CPU%':>8}"
    )
    sub = (
        f"{'':>6} {'':<6} {'':>5} {'':>5} {'':>4} {'':>3} "
        f"{'p50':>7} {'p99':>7} {'p50':>5} {'p99':>5} {'p50':>5} {'p99':>5}"
    )
    out = [head, sub]
    for r in rows:
        answered = [c for c in r.calls if c.answered is not None and not c.lost]
        # every latency over the answered calls only, so the columns describe one population
        ring = [c.ring - c.hold for c in answered if c.ring is not None and c.hold is not None]
        ans = [c.answered - c.hold for c in answered if c.answered and c.hold is not None]
        pop = [
            c.popped - c.answered
            for c in answered
            if c.popped is not None and c.answered is not None
        ]
        daemon = r.path == "daemon"
        fb = str(sum(c.fallback for c in r.calls)) if daemon else "-"
        out.append(
            f"{r.rate:>6g} {r.path:<6} {len(r.calls):>5} {len(answered):>5} "
            f"{sum(c.lost for c in r.calls):>4} {fb:>3} "
            f"{_fmt(pct(ring, 50)):>7} {_fmt(pct(ring, 99)):>7} "
            f"{_fmt(pct(ans, 50)):>5} {_fmt(pct(ans, 99)):>5} "
            f"{_fmt(pct(pop, 50), digits=1) if daemon else '-':>5} "
            f"{_fmt(pct(pop, 99), digits=1) if daemon else '-':>5} "
            f"{_fmt(r.cpu.get('cti'), 1, 1) if daemon else '-':>8} "
            f"{_fmt(r.rss_kb.get('cti', 0) / 1024, 1, 1) if daemon else '-':>10} "
            f"{_fmt(r.cpu.get('asterisk'), 1, 1):>8}" + (f"  {r.note}" if r.note else "")
        )
    return out


async def settle_seats(bench: Bench) -> None:
    """Between runs: nothing of ours left up, and the seats' Local channels gone."""
    await asyncio.sleep(1.0)
    if await bench.hang_up_mine():
        await asyncio.sleep(1.0)


async def run_daemon(bench: Bench, rate: float, tmp: Path) -> Row:
    bench.calls = {}
    bench.hold_context = "cti-hold"
    daemon = Daemon(tmp, bench)
    try:
        await daemon.start()
        assert daemon.proc is not None
        sampler = ProcSampler({"cti": daemon.proc.pid, "asterisk": asterisk_pid()})
        sampler.start()
        await bench.drive("cti-inbound", rate)
        sampler.stop()
        errors = daemon.count(lambda r: r.get("level") in {"error", "critical"})
        connected = daemon.count(lambda r: r.get("event") == "call_connected")
        offered = {r.get("linkedid") for r in daemon.logs if r.get("event") == "call_offered"}
        # answered but never offered by this daemon: someone else connected it
        foreign = sum(1 for c in bench.calls.values() if c.answered and c.uid not in offered)
        note = f"(daemon log: {connected} call_connected, {errors} errors; {foreign} foreign)"
        calls = list(bench.calls.values())
        return Row(rate, "daemon", calls, sampler.cpu_pct, sampler.rss_peak_kb, note)
    finally:
        await bench.hang_up_mine()
        await daemon.stop()
        await settle_seats(bench)


async def run_queue(bench: Bench, rate: float, seat_ids: list[str]) -> Row:
    bench.calls = {}
    bench.hold_context = "queue"
    added: list[str] = []
    try:
        for seat in seat_ids:
            iface = f"Local/{seat}@seats"
            await bench.ami.action(
                {
                    "Action": "QueueAdd",
                    "Queue": BASELINE_QUEUE,
                    "Interface": iface,
                    "MemberName": seat,
                    "Penalty": "0",
                }
            )
            added.append(iface)
        sampler = ProcSampler({"asterisk": asterisk_pid()})
        sampler.start()
        await bench.drive("queue-in", rate)
        sampler.stop()
        return Row(rate, "queue", list(bench.calls.values()), sampler.cpu_pct, {})
    finally:
        await bench.hang_up_mine()
        for iface in added:
            await bench.ami.action(
                {"Action": "QueueRemove", "Queue": BASELINE_QUEUE, "Interface": iface},
                check=False,
            )
        await settle_seats(bench)


def remove_recordings(call_ids: set[str]) -> int:
    """The daemon path records every call (cti-record): delete this run's files only."""
    # the directory listed once: a glob per call lists it once per call, O(calls x files),
    # which took hours after load.py's 30-minute run (36,000 calls, as many files)
    n = 0
    with contextlib.suppress(OSError):
        for f in RECORDINGS.iterdir():
            if f.name.split(".", 1)[0] in call_ids:
                with contextlib.suppress(OSError):
                    f.unlink()
                    n += 1
    return n


def print_table(lines: Iterable[str], aborted: str) -> int:
    """A benchmark's table, then why it stopped early if it did; its exit status (3:
    aborted, the rows are those measured before)."""
    for line in lines:
        print(line)
    if aborted:
        print(aborted)
        return 3
    return 0


def start(bench: Bench) -> list[asyncio.Task[None]]:
    """What every benchmark's main does first, in its running loop: quiet logs, SIGTERM
    handled, the bench's AMI link and event reader started (stop them with clean_up)."""
    # the AMI client logs every connection step; a benchmark prints only its table
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM like Ctrl-C: cancel, so every `finally` hangs up and stops the daemon
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    return [
        asyncio.create_task(bench.ami.run(), name="bench.ami"),
        asyncio.create_task(bench.consume(), name="bench.events"),
    ]


async def clean_up(bench: Bench, runners: Iterable[asyncio.Task[None]]) -> None:
    """After a run, whatever ended it: this run's calls hung up, its tasks stopped, its
    recordings removed (the testbed is shared: leave nothing behind)."""
    with contextlib.suppress(Exception):
        await bench.hang_up_mine()
    for t in list(bench.tasks):
        t.cancel()
    for t in runners:
        t.cancel()
    removed = remove_recordings(bench.mine)
    print(f"cleanup: removed {removed} recordings of this run", file=sys.stderr)


@contextlib.contextmanager
def tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cti-e2e-") as d:
        yield Path(d)


async def main(args: argparse.Namespace) -> int:
    others = other_daemons() if "daemon" in args.paths else []
    if others and not args.ignore_other_daemons:
        print(
            f"another `cti run` is running (pids {others}): it takes held calls too and would "
            "skew the daemon rows (--ignore-other-daemons to run anyway, with a warning)"
        )
        return 2
    bench = Bench(args)
    runners = start(bench)
    rows: list[Row] = []
    version = "?"
    aborted = ""
    seat_ids = ["1001", "1002", "1003", "1004", "2001"]
    try:
        await bench.ami.wait_connected(10)
        settings = await bench.ami.action({"Action": "CoreSettings"})
        version = str(settings.response.get("AsteriskVersion", "?"))
        ast_pid = asterisk_pid()
        with tmpdir() as tmp:
            for i, rate in enumerate(args.rates):
                for path in args.paths:
                    print(f"... rate {rate:g}/s, {path}", file=sys.stderr, flush=True)
                    if path == "daemon":
                        sub = tmp / f"run{i}"
                        sub.mkdir()
                        row = await run_daemon(bench, rate, sub)
                    else:
                        row = await run_queue(bench, rate, seat_ids)
                    if asterisk_pid() != ast_pid:
                        msg = "Asterisk was restarted during the run"
                        raise AmiError("bench", msg)  # noqa: TRY301 - one abort path
                    rows.append(row)
    except (AmiError, TimeoutError, OSError) as exc:
        # the testbed is shared: someone restarting Asterisk makes this run meaningless
        aborted = f"ABORTED: {exc}; rows measured before it are below, the rest discarded"
    finally:
        await clean_up(bench, runners)
    print(machine_line())
    print(
        f"Asterisk {version}; aiomqtt {version_of('aiomqtt')}; "
        f"seats {','.join(seat_ids)} (Local/<id>@seats, answer after 0.5 s); "
        f"{args.duration:g} s per rate, talk {args.talk:g} s, lost after {args.lost_after:g} s"
    )
    if others:
        print(f"WARNING: other `cti run` processes were running during this run: pids {others}")
    return print_table(render(rows), aborted)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rates", default="1,2,5", help="calls per second, comma-separated")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of originating per rate")
    p.add_argument("--talk", type=float, default=2.0, help="seconds from answer to hang-up")
    p.add_argument("--lost-after", type=float, default=30.0, help="unanswered after this: lost")
    p.add_argument("--paths", default="daemon,queue", help="daemon,queue (order of the runs)")
    p.add_argument(
        "--ignore-other-daemons",
        action="store_true",
        help="run even if another `cti run` is up (it takes held calls too)",
    )
    args = p.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.paths = [s for s in args.paths.split(",") if s]
    if any(r <= 0 or r > 20 for r in args.rates):
        p.error("rates must be in (0, 20] calls/s")
    if args.duration <= 0 or args.duration > 120:
        p.error("--duration must be in (0, 120] s")
    if set(args.paths) - {"daemon", "queue"}:
        p.error("--paths: daemon and/or queue")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))

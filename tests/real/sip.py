"""Real SIP on the testbed: `sipp` seat phones that register as PJSIP endpoints 6001..6004
and a `sipp` citizen calling in over the carrier trunk (asterisk-sample/pjsip.conf,
scenarios in tests/sip/, README.md "The testbed").

Ports (all 127.0.0.1; every sipp instance needs its own): phone 600n answers on 508n
(the Contact it registers), registers from 509n, RTP 160n0; the caller sends from 5070
(how Asterisk tells the carrier from the phones) with RTP on 16100.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.conftest import PROJECT, bed_cli

SCENARIOS = PROJECT / "tests" / "sip"
ASTERISK = "127.0.0.1:5060"
CALLER_PORT = 5070  # pjsip.conf [sipp-carrier] identify: match = 127.0.0.1:5070
# the county node county1 (asterisk-sample/county1/pjsip.conf): its PJSIP, and its
# carrier's caller port ([county-carrier] identify: match = 127.0.0.1:5072)
COUNTY_ASTERISK = "127.0.0.1:5062"
COUNTY_CALLER_PORT = 5072


def phone_ports(endpoint: str) -> tuple[int, int, int]:
    """(UAS port, REGISTER port, RTP port) of phone 6001..6004."""
    n = int(endpoint) - 6000
    assert 1 <= n <= 4, endpoint  # pjsip.conf has 6001..6004
    return 5080 + n, 5090 + n, 16000 + 10 * n


class SipBed:
    """The sipp processes of one test; every one is ended (by its pid) on exit, and
    every phone registered is unregistered."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._procs: list[asyncio.subprocess.Process] = []
        self.phones: dict[str, asyncio.subprocess.Process] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        for endpoint in list(self.phones):
            with contextlib.suppress(Exception):
                await self.register(endpoint, expires=0)
        for proc in self._procs:
            await _end(proc)

    async def _sipp(self, name: str, *args: str) -> asyncio.subprocess.Process:
        log = self._logs / f"sipp-{name}"
        proc = await asyncio.create_subprocess_exec(
            "sipp",
            *args,
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-trace_err",
            "-error_file",
            f"{log}-errors.log",
            "-trace_screen",
            "-screen_file",
            f"{log}-screen.log",
            cwd=SCENARIOS,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._procs.append(proc)
        return proc

    async def phone(self, endpoint: str) -> None:
        """Phone `endpoint` (6001..6004) answers on its port and registers there."""
        uas, _reg, rtp = phone_ports(endpoint)
        # -aa: 200 OK to in-call INFO/NOTIFY/UPDATE, which phone.xml does not list
        proc = await self._sipp(
            f"phone{endpoint}", "-sf", "phone.xml", "-p", str(uas), "-mp", str(rtp), "-aa"
        )
        self.phones[endpoint] = proc
        await asyncio.sleep(0.3)  # bound before Asterisk's first qualify
        assert proc.returncode is None, f"sipp phone {endpoint} did not start"
        await self.register(endpoint)
        # qualified once (Avail): else its device state may still be UNAVAILABLE when a
        # daemon starts or the seat logs in, and the seat would be not ready
        async with asyncio.timeout(10):
            while not await asyncio.to_thread(_reachable, endpoint):
                await asyncio.sleep(0.2)

    async def register(self, endpoint: str, *, expires: int = 300) -> None:
        uas, reg, _rtp = phone_ports(endpoint)
        proc = await self._sipp(
            f"register{endpoint}",
            ASTERISK,
            "-sf",
            "register.xml",
            "-p",
            str(reg),
            "-m",
            "1",
            "-s",
            endpoint,
            "-au",
            endpoint,
            "-ap",
            f"{endpoint}secret",
            "-key",
            "contact_port",
            str(uas),
            "-key",
            "expires",
            str(expires),
            "-timeout",
            "10s",
        )
        assert await proc.wait() == 0, f"sipp REGISTER of {endpoint} (expires {expires}) failed"

    def kill_phone(self, endpoint: str) -> None:
        """The phone dies (power cut, cable pulled): no unregister, OPTIONS unanswered."""
        proc = self.phones.pop(endpoint)
        proc.send_signal(signal.SIGKILL)

    async def call(
        self, number: str, caller: str = "13800138000", *, talk_s: float = 8.0, county: bool = False
    ) -> asyncio.subprocess.Process:
        """A citizen (display name 张三) calls `number` over the trunk; hangs up `talk_s`
        after the hotline answered. Wait on the process: 0 when the call went as planned.
        `county`: over the county node's carrier instead (county1, the second Asterisk),
        whose dialplan sends it over the inter-node trunk to the city."""
        return await self._sipp(
            f"caller{number}",
            COUNTY_ASTERISK if county else ASTERISK,
            "-sf",
            "caller.xml",
            "-p",
            str(COUNTY_CALLER_PORT if county else CALLER_PORT),
            "-mp",
            "16200" if county else "16100",
            "-m",
            "1",
            "-s",
            number,
            "-key",
            "caller",
            caller,
            "-d",
            str(int(talk_s * 1000)),
            "-timeout",
            f"{int(talk_s) + 30}s",
            "-trace_msg",
            "-message_file",
            str(self._logs / f"sipp-caller{number}-messages.log"),
        )


def _reachable(endpoint: str) -> bool:
    return any(
        f"{endpoint}/sip:" in line and " Avail " in line
        for line in bed_cli("pjsip show contacts").splitlines()
    )


async def _end(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

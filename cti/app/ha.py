"""Active/standby: the lease task, the takeover and the step-down (docs/high-availability.md).

:class:`HaControl` runs as one task of the daemon's TaskGroup. As a standby it tries to take
the lease every ``ha.renew_s`` on its dedicated connection (cti/adapters/db/leader.py); once
it has it, the daemon takes over (:meth:`cti.app.daemon.Daemon.take_over`: the restart
path, state loaded from the database and every node's channels listed) and the task renews
the lease every ``ha.renew_s``. What the daemon may do is :meth:`Leadership.acting`, on the
monotonic clock (cti/core/leadership.py).

It steps down when a renewal is refused (another daemon holds a newer epoch), when the
lease's session is lost, when its own clock says the lease ran out (a renewal that did not
come back in time; a process resumed after SIGSTOP), or when the database refused one of its
writes (fenced). Stepping down ends the daemon (:class:`LeadershipLost` out of the
TaskGroup, exit code 5): its supervisor starts it again as a clean standby.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
from structlog.typing import FilteringBoundLogger

from cti.adapters.db.leader import LeaseConnection, LeaseSessionLost
from cti.adapters.http import Metric, ReadyPart
from cti.core.leadership import Leadership, StepDown
from cti.settings import HaSettings

__all__ = ["HaControl", "LeadershipLost", "ha_metrics", "ha_ready_part"]

_LOOK_ERRORS = (LeaseSessionLost, TimeoutError, OSError, asyncpg.PostgresError)


class LeadershipLost(Exception):  # noqa: N818 - what happened, as the daemon logs it
    """This daemon was leader and is no more: it ends (and is started again as standby)."""

    def __init__(self, step: StepDown) -> None:
        self.step = step
        super().__init__(f"leadership lost (epoch {step.epoch}): {step.reason}")


class HaControl:
    """The lease task of one daemon of a pair."""

    def __init__(
        self,
        settings: HaSettings,
        lease: LeaseConnection,
        leadership: Leadership,
        *,
        take_over: Callable[[], Awaitable[None]],
        changed: Callable[[], None],
        log: FilteringBoundLogger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s = settings
        self._lease = lease
        self.leadership = leadership
        self._take_over = take_over
        self._changed = changed  # role or leader changed: publish the status
        self._log = log
        self._clock = clock
        self._fenced = asyncio.Event()
        self.takeovers = 0
        self.renewals_failed = 0
        self.backend_pid: int | None = None  # of the lease session (pg_stat_activity)

    def fenced(self) -> None:
        """The database refused one of our writes as stale: step down now."""
        self._fenced.set()

    async def run(self) -> None:
        try:
            await self._standby()
            await self._lead()
        finally:
            await self._lease.close()

    async def _standby(self) -> None:
        seen: tuple[str, int] | None = None
        while True:
            try:
                if not self._lease.open:
                    await self._lease.connect()
                    self.backend_pid = await self._lease.backend_pid()
                sent = self._clock()
                epoch = await self._lease.acquire(self._s.lease_s)
                if epoch is not None:
                    self.leadership.acquired(epoch, sent)
                    self.takeovers += 1
                    self._log.info(
                        "ha_leader_acquired",
                        node=self.leadership.node_id,
                        epoch=epoch,
                        previous_leader=seen[0] if seen else None,
                    )
                    self._changed()
                    await self._take_over()
                    self._log.info(
                        "ha_took_over",
                        epoch=epoch,
                        took_s=round(self._clock() - sent, 3),
                    )
                    return
                row = await self._lease.read()
                now = (row.holder, row.epoch) if row is not None else None
                if now != seen:
                    seen = now
                    self.leadership.seen(*(now or (None, None)))
                    self._log.info(
                        "ha_standby",
                        leader=now[0] if now else None,
                        epoch=now[1] if now else None,
                        lease_left_s=round(row.left_s, 3) if row is not None else None,
                    )
                    self._changed()
            except _LOOK_ERRORS as exc:
                self._log.warning("ha_lease_unavailable", role="standby", error=repr(exc)[:200])
                await self._lease.close()
            await asyncio.sleep(self._s.renew_s)

    async def _lead(self) -> None:
        lead = self.leadership
        epoch = lead.epoch
        if epoch is None:  # pragma: no cover - acquired() set it
            return
        while True:
            # asleep until the next renewal, or at once when a write was fenced; the lease
            # may end by the clock meanwhile (a renewal that hangs): wake before that too
            wait = min(self._s.renew_s, max(0.0, lead.remaining(self._clock())))
            try:
                async with asyncio.timeout(wait):
                    await self._fenced.wait()
            except TimeoutError:
                pass
            if self._fenced.is_set():
                self._lost("write_fenced")
            # first the clock: a process resumed after SIGSTOP finds its lease long over
            if lead.expired(self._clock()):
                self._lost("lease_expired_locally")
            sent = self._clock()
            try:
                ok = await self._lease.renew(epoch, self._s.lease_s)
            except LeaseSessionLost:
                self._lost("session_lost")
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                # a slow or failing renewal: the clock decides when that becomes a step-down
                self.renewals_failed += 1
                self._log.warning(
                    "ha_renew_failed",
                    epoch=epoch,
                    error=repr(exc)[:200],
                    acting_left_s=round(lead.remaining(self._clock()), 3),
                )
                continue
            if not ok:
                self._lost("renew_refused")
            lead.renewed(sent)

    def _lost(self, reason: str) -> None:
        step = self.leadership.step_down(reason)
        if step is None:  # pragma: no cover - only a leader renews
            step = StepDown(epoch=-1, reason=reason)
        self._log.error(
            "ha_stepped_down",
            epoch=step.epoch,
            reason=reason,
            hint="this daemon stops acting and exits (code 5); its supervisor starts it "
            "again as the standby",
        )
        self._changed()
        raise LeadershipLost(step)


def ha_ready_part(leadership: Leadership, now: float) -> ReadyPart:
    """/readyz's ``ha`` part: ready on the acting leader only, so a load balancer in front
    of the pair sends the HTTP API (110 pushes, the console) to the leader."""
    st = leadership.status()
    acting = leadership.acting(now)
    if acting:
        detail = f"leader {st['node']}, epoch {st['epoch']}"
    else:
        detail = (
            f"{st['role']} {st['node']}; leader {st['leader'] or '(none)'}, "
            f"epoch {st['leader_epoch']}"
        )
    return ReadyPart(name="ha", ready=acting, detail=detail)


def ha_metrics(control: HaControl, now: float, *, dropped: Mapping[str, int]) -> list[Metric]:
    lead = control.leadership
    st = lead.status()
    info = {"node": str(st["node"]), "role": str(st["role"]), "leader": str(st["leader"] or "")}
    return [
        Metric(
            name="cti_ha_leader",
            kind="gauge",
            help="1 while this daemon is the acting leader of the active/standby pair.",
            samples=((info, float(lead.acting(now))),),
        ),
        Metric(
            name="cti_ha_epoch",
            kind="gauge",
            help="The lease epoch (fencing token) this daemon leads with, else the leader's.",
            samples=(({}, float(lead.epoch or lead.leader_epoch or 0)),),
        ),
        Metric(
            name="cti_ha_takeovers_total",
            kind="counter",
            help="Times this daemon took the lease.",
            samples=(({}, float(control.takeovers)),),
        ),
        Metric(
            name="cti_ha_renewals_failed_total",
            kind="counter",
            help="Lease renewals that failed or timed out (the clock decides the step-down).",
            samples=(({}, float(control.renewals_failed)),),
        ),
        Metric(
            name="cti_ha_not_leader_dropped_total",
            kind="counter",
            help="Outward effects dropped because this daemon was not (or no longer) acting, "
            "by where (ami, mqtt, inputs, fenced rows).",
            samples=tuple(({"where": k}, float(v)) for k, v in sorted(dropped.items())),
        ),
    ]

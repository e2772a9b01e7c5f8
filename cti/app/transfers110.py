"""110 ⇄ 12345 glue: pushes in (HTTP or MQTT), their feedback out, escalation notices.

Everything here is stored before anyone is told (docs/dispatch110.md): a push's transfer,
feedback and ticket operation are committed before the reply says accepted; feedback from
calls is stored, then published on ``110/feedback/<id>``; the webhook deliverer
(:class:`~cti.adapters.dispatch110.FeedbackDeliverer`) sends what is stored, retried, and
also carries the escalation targets' ``notify_url`` notices.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from cti.adapters.db.store import Store
from cti.adapters.dispatch110 import (
    Dispatch110Store,
    FeedbackDeliverer,
    TransferPush,
    parse_push,
    reply_json,
)
from cti.adapters.http import error_envelope
from cti.adapters.http.ratelimit import RateLimiter
from cti.adapters.mqtt import MqttAdapter
from cti.adapters.push110_limit import refused_push_reply
from cti.app.feed import Feed
from cti.core import (
    NotifyEscalation,
    Reply110,
    Report110,
    StoreTicketOp,
    Transfer110NotStored,
    Transfer110Pushed,
)
from cti.settings import Settings

__all__ = ["PUSH_TOPIC", "Transfers110"]

PUSH_TOPIC = "110/transfers"  # MQTT pushes from 110; the reply goes on <it>/reply
_PUSHES_QUEUED = 1000


class Transfers110:
    """The 110 capability of the daemon: `push110` and `transfer110_status` for the HTTP
    router (:class:`~cti.adapters.dispatch110.PushHandler`), and the tasks that store and
    publish feedback and answer MQTT pushes."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        mqtt: MqttAdapter,
        feed: Feed,
        live_status: Callable[[str], dict[str, Any] | None],
        tickets_changed: Callable[[], None],
        log: FilteringBoundLogger,
    ) -> None:
        self._mqtt = mqtt
        self._feed = feed
        self._live_status = live_status  # Core.transfer110_status
        self._tickets_changed = tickets_changed  # wakes the outbox deliverer
        self._log = log
        # transfers and their feedback, stored before anyone is told
        feedback = settings.dispatch110.feedback
        self.store110 = Dispatch110Store(store, webhook=feedback is not None)
        # the webhooks: 110's feedback, and the escalation targets' notify_url
        notify = any(t.notify_url for t in settings.numberplan.emergency)
        self.webhook = (
            FeedbackDeliverer(store, feedback, log=structlog.get_logger("cti.dispatch110"))
            if feedback is not None or notify
            else None
        )
        self._reports: asyncio.Queue[Report110] = asyncio.Queue()
        self._pushes: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_PUSHES_QUEUED)
        # mqtt.push110_rate_limit (issue 15), per topic: MQTT does not say who published,
        # and only 110 may publish there (the broker's ACL); refused before it is queued
        limit = settings.mqtt.push110_rate_limit
        self.push_limit = RateLimiter(limit.limit, limit.window_s)
        self._clock: Callable[[], float] = time.monotonic

    async def load(self, since: float) -> list[dict[str, Any]]:
        """The transfers stored since `since` (start-up: into the core)."""
        return await self.store110.load(since)

    async def aclose(self) -> None:
        if self.webhook is not None:
            await self.webhook.aclose()

    # ---- in: a push

    def on_mqtt(self, payload: bytes) -> None:
        """A push on cti/110/transfers: queued for :meth:`mqtt_pushes` (bounded); past
        ``mqtt.push110_rate_limit`` answered ``rate_limited`` at once, not stored."""
        verdict = self.push_limit.take(PUSH_TOPIC, self._clock())
        if not verdict.allowed:
            if verdict.log_refused:  # once per window: a flood must not flood the log
                self._log.warning(
                    "push110_rate_limited",
                    via="mqtt",
                    key=PUSH_TOPIC,
                    refused=verdict.log_refused,
                    per=self.push_limit.limit,
                    window_s=self.push_limit.window_s,
                    retry_after_s=round(verdict.retry_after_s, 1),
                )
            reply = refused_push_reply(payload, self.push_limit, verdict)
            self._mqtt.publish(f"{PUSH_TOPIC}/reply", reply)
            return
        try:
            self._pushes.put_nowait(payload)
        except asyncio.QueueFull:
            self._log.error("push110_dropped", reason="more than 1000 pushes queued")

    async def push110(self, push: TransferPush) -> Reply110:
        """A push from 110 (HTTP or MQTT): through the core; the transfer, its feedback and
        a data transfer's ticket operation are committed before the reply says accepted."""
        item = Transfer110Pushed(
            transfer=push.transfer(), at=time.time(), request_id=push.request_id
        )
        kept = self._feed(item, keep=lambda e: isinstance(e, Reply110 | Report110 | StoreTicketOp))
        reports = [e for e in kept if isinstance(e, Report110)]
        ops = [e.op for e in kept if isinstance(e, StoreTicketOp)]
        try:
            await self.store110.save(reports, ops)
        except Exception:
            if any(r.feedback.event == "accepted" for r in reports):
                # not stored, so not accepted: the error goes back and a repeat is new
                self._feed(
                    Transfer110NotStored(transfer_id=item.transfer.transfer_id, at=time.time())
                )
            raise
        if ops:
            self._tickets_changed()
        for report in reports:
            self._publish110(report)
        return next(e for e in kept if isinstance(e, Reply110))

    async def transfer110_status(self, transfer_id: str) -> dict[str, Any] | None:
        live = self._live_status(transfer_id)
        return live if live is not None else await self.store110.status(transfer_id)

    async def mqtt_pushes(self) -> None:
        """Pushes on cti/110/transfers, one at a time; the reply on cti/110/transfers/reply."""
        while True:
            payload = await self._pushes.get()
            try:
                await self._mqtt_push(payload)
            except Exception:  # noqa: BLE001 - one bad push costs that push, never the loop
                self._log.exception("push110_message_failed", via="mqtt", size=len(payload))

    async def _mqtt_push(self, payload: bytes) -> None:
        reply_topic = f"{PUSH_TOPIC}/reply"
        parsed = parse_push(payload)
        if isinstance(parsed, dict):
            self._log.warning("push110_invalid", via="mqtt", error=parsed["error"]["message"])
            self._mqtt.publish(reply_topic, parsed)
            return
        try:
            reply = await self.push110(parsed)
        except Exception as exc:  # noqa: BLE001 - not stored: say so, 110 pushes again
            self._log.exception("push110_failed", transfer_id=parsed.transfer_id)
            self._mqtt.publish(
                reply_topic,
                error_envelope("internal", repr(exc), request_id=parsed.request_id),
            )
            return
        self._mqtt.publish(reply_topic, reply_json(reply)[1])

    # ---- out: feedback and notices

    def report(self, report: Report110) -> None:
        """Feedback from a call (the Report110 effect): stored, then published, in order."""
        self._reports.put_nowait(report)

    def _publish110(self, report: Report110) -> None:
        fb = report.feedback
        self._mqtt.publish(f"110/feedback/{fb.transfer_id}", fb.to_json())
        if self.webhook is not None:
            self.webhook.notify()

    async def save_reports(self) -> None:
        """Feedback from calls (answered, ticket, ended): stored, then published, in order.
        A database error is retried: the events wait rather than go out unrecorded."""
        while True:
            report = await self._reports.get()
            for attempt in itertools.count():
                try:
                    await self.store110.save([report], [])
                    break
                except Exception as exc:  # noqa: BLE001 - the database: keep trying
                    self._log.warning("feedback110_store_failed", error=repr(exc), attempt=attempt)
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
            try:
                self._publish110(report)
            except Exception:  # noqa: BLE001 - stored: the webhook still delivers it
                self._log.exception(
                    "feedback110_publish_failed", transfer_id=report.feedback.transfer_id
                )

    async def notify(self, effect: NotifyEscalation) -> None:
        """An escalation's data for the receiving side: stored, then the webhook wakes."""
        for attempt in itertools.count():
            try:
                await self.store110.save_notification(effect.event_id, effect.url, effect.payload)
                break
            except Exception as exc:  # noqa: BLE001 - the database: keep trying
                self._log.warning("escalation_notify_store_failed", error=repr(exc))
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        if self.webhook is not None:
            self.webhook.notify()

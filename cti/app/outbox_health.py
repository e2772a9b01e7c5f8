"""The ticket outbox in /metrics and /readyz (issue 15).

A parked row is a ticket operation the daemon will not retry on its own (the backend
refused it, or its payload is not a valid operation): a call without its ticket until an
operator looks (`cti outbox list`, `cti outbox requeue`). /readyz shows it as a part that
is not ready but not required — calls are still routed and the rows behind it delivered,
so a load balancer must not take the node out — and /metrics counts it.
"""

from __future__ import annotations

from cti.adapters.http import Metric, ReadyPart
from cti.adapters.workorders.outbox import OutboxDeliverer

__all__ = ["outbox_metrics", "outbox_ready"]


def outbox_ready(tickets: OutboxDeliverer) -> list[ReadyPart]:
    """The `outbox` part of /readyz: degraded while any row is parked."""
    parked = tickets.parked_now or 0
    detail = (
        f"degraded: {parked} ticket operation(s) parked (cti outbox list)"
        if parked
        else "no parked ticket operations"
    )
    return [
        ReadyPart(
            name="outbox",
            ready=parked == 0,
            required=False,  # tickets behind a parked row still flow; calls are served
            detail=f"{detail}; {tickets.delivered} delivered, {tickets.failures} retries",
        )
    ]


def outbox_metrics(tickets: OutboxDeliverer) -> list[Metric]:
    """The outbox's parked rows and deliveries."""
    return [
        Metric(
            name="cti_outbox_parked",
            kind="gauge",
            help="Ticket operations parked (not retried until requeued: cti outbox).",
            samples=(({}, float(tickets.parked_now or 0)),),
        ),
        Metric(
            name="cti_outbox_parked_total",
            kind="counter",
            help="Ticket operations this process parked, by reason (invalid_payload: not "
            "a valid operation; refused: the backend refused it or its create).",
            samples=(
                ({"reason": "invalid_payload"}, float(tickets.parked_invalid)),
                ({"reason": "refused"}, float(tickets.parked - tickets.parked_invalid)),
            ),
        ),
        Metric(
            name="cti_outbox_delivered_total",
            kind="counter",
            help="Ticket operations delivered to the work-order backend.",
            samples=(({}, float(tickets.delivered)),),
        ),
    ]

"""What /readyz and /metrics show: the daemon's parts and its Prometheus metric families.

The daemon builds :class:`ReadyPart` and :class:`Metric` values at probe or scrape time
(through the :class:`~cti.adapters.http.api.ApiFacade`); this module only renders them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.core import Metric as PromMetric
from prometheus_client.registry import Collector

__all__ = [
    "METRICS_CONTENT_TYPE",
    "Histogram",
    "HistogramMetric",
    "Metric",
    "ReadyPart",
    "render_metrics",
]

METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyPart:
    """One part of the daemon /readyz reports on (``ami.main``, ``database``, ``mqtt``).

    Attributes:
        required: whether /readyz is 503 while this part is not ready.
        detail: a short human-readable state (``connected``, ``backoff: refused``).
    """

    name: str
    ready: bool
    required: bool = True
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """One Prometheus metric family: its samples are ``(labels, value)`` pairs."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramMetric:
    """One Prometheus histogram: ``buckets`` are ``(upper bound, observations <= it)``,
    cumulative, without ``+Inf`` (that is ``count``)."""

    name: str
    help: str
    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


class Histogram:
    """Observations since the daemon started, counted into fixed buckets: what a
    :class:`HistogramMetric` shows at scrape time (cumulative, as Prometheus expects)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, le in enumerate(self.bounds):
            if value <= le:
                self.counts[i] += 1

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        return tuple(zip(self.bounds, self.counts, strict=True))

    def metric(self, *, name: str, help: str) -> HistogramMetric:  # noqa: A002 - Prometheus' word
        return HistogramMetric(
            name=name, help=help, buckets=self.cumulative(), count=self.count, sum=self.sum
        )


class _Snapshot(Collector):
    """A collector over values already read from the daemon (one scrape)."""

    def __init__(self, metrics: Sequence[Metric | HistogramMetric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[PromMetric]:
        for m in self._metrics:
            if isinstance(m, HistogramMetric):
                yield _histogram(m)
                continue
            # the client names a counter family without `_total` and adds it back in
            # HELP/TYPE; the samples keep the full name
            base = m.name.removesuffix("_total") if m.kind == "counter" else m.name
            family = PromMetric(base, m.help, m.kind)
            for labels, value in m.samples:
                family.add_sample(m.name, dict(labels), float(value))
            yield family


def _histogram(m: HistogramMetric) -> HistogramMetricFamily:
    counts = [(repr(float(le)), float(n)) for le, n in sorted(m.buckets)]
    counts.append(("+Inf", float(m.count)))
    return HistogramMetricFamily(m.name, m.help, buckets=counts, sum_value=m.sum)


def render_metrics(metrics: Sequence[Metric | HistogramMetric]) -> str:
    """The Prometheus text exposition format (0.0.4) of *metrics*, by ``prometheus_client``.

    The numbers live in the daemon's objects and are read at scrape time; they are handed
    to a fresh registry with one custom collector, so no process-global registry (two
    daemons in one test process stay apart).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))
    return generate_latest(registry).decode()

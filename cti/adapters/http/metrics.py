"""What /readyz and /metrics show: the daemon's parts and its Prometheus metric families.

The daemon builds :class:`ReadyPart` and :class:`Metric` values at probe or scrape time
(through the :class:`~cti.adapters.http.api.ApiFacade`); this module only renders them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["METRICS_CONTENT_TYPE", "Metric", "ReadyPart", "render_metrics"]

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


def render_metrics(metrics: Sequence[Metric]) -> str:
    """The Prometheus text exposition format (0.0.4) of *metrics*.

    Hand-rolled instead of ``prometheus_client``: the numbers already live in the daemon's
    objects and are read at scrape time, so a process-global registry and its collectors
    would only add a dependency and global state (two daemons in one test process).
    """
    out: list[str] = []
    for m in metrics:
        out.append(f"# HELP {m.name} {_escape_help(m.help)}")
        out.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{m.name}{{{inner}}} {_number(value)}")
            else:
                out.append(f"{m.name} {_number(value)}")
    return "\n".join(out) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))

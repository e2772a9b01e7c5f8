"""The ``kpis`` section: the thresholds of the official KPI definitions (docs/kpis.md) and
the time zone reports group hours and days in."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from cti.kpis import Thresholds
from cti.settings.base import FROZEN

__all__ = ["KpiSettings"]


class KpiSettings(BaseModel):
    """Thresholds of `cti report` and `GET /api/v1/stats` (defaults: GB/T 33358-2016 and
    city practice); every "within N s" is inclusive, a short abandon strictly shorter."""

    model_config = FROZEN

    answer_s: float = Field(
        default=15.0, gt=0, le=3600, description="N of N秒接通率 and of SL/应答及时率."
    )
    also_n_s: tuple[float, ...] = Field(
        default=(20.0,), max_length=8, description="Further N reported beside answer_s."
    )
    short_abandon_s: float = Field(
        default=5.0, ge=0, le=3600, description="An abandon with a shorter wait is short."
    )
    # the live alarms (cti/stats/alarms, docs/kpis.md): each fires strictly past its limit
    answer_rate_min: float = Field(
        default=0.95, ge=0, le=1, description="Alarm: rolling-24 h 接通率 below this."
    )
    n_s_rate_min: float = Field(
        default=0.80, ge=0, le=1, description="Alarm: today's N秒接通率 (÷ offered) below this."
    )
    longest_wait_max_s: float = Field(
        default=15.0, gt=0, le=86_400, description="Alarm: a caller still waiting longer."
    )
    # the callback figures (docs/kpis.md): a missed call's citizen reached by a callback
    # within this many minutes of hanging up (inclusive)
    callback_within_min: float = Field(
        default=30.0, gt=0, le=10_080, description="N of 'callbacks reached within N min'."
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone for --from/--to and hour/day groups (e.g. Asia/Shanghai); "
        "none = the machine's local time.",
    )
    # the live figures' callback counts (cti/stats/live): the callback list's last 24 h read
    # again this often (placed and reached change after the request; other nodes write too)
    live_callbacks_s: float = Field(
        default=5.0,
        ge=1,
        le=3600,
        description="Seconds between two reads of the callback list for the live figures.",
    )
    # the report over whole closed days from the per-day roll-up (docs/kpis.md, "The
    # roll-up"): needs `timezone` (the roll-up's days are its local days)
    rollup: bool = Field(
        default=True,
        description="cti report / the stats API read closed whole days from the per-day "
        "roll-up (kpi_rollup; rolled on demand, equal to the raw report); needs timezone.",
    )

    # the fallback's calls (ami.nodes[].queue_log, cti/app/fallback_facts.py): the file is
    # read this often; a call is stored once its queue part ended this long ago and the
    # daemon does not track it (a call it took back, or adopted, has its own entry)
    fallback_scan_s: float = Field(
        default=15.0, ge=1, le=3600, description="Seconds between two reads of queue_log."
    )
    fallback_settle_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="A fallback call is stored this long after its queue part ended.",
    )
    fallback_lookback_s: float = Field(
        default=7 * 86_400.0,
        ge=600,
        le=366 * 86_400,
        description="At start, queue_log is read from this far back: the longest the "
        "daemon may have been down and still have its fallback's calls counted.",
    )

    @field_validator("also_n_s")
    @classmethod
    def _positive(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < v <= 3600 for v in values):
            msg = "every also_n_s must be within 0 < N <= 3600"
            raise ValueError(msg)
        return values

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                msg = f"unknown time zone {value!r}"
                raise ValueError(msg) from exc
        return value

    def thresholds(self) -> Thresholds:
        return Thresholds(
            answer_s=self.answer_s,
            also_n_s=self.also_n_s,
            short_abandon_s=self.short_abandon_s,
            answer_rate_min=self.answer_rate_min,
            n_s_rate_min=self.n_s_rate_min,
            longest_wait_max_s=self.longest_wait_max_s,
            callback_within_min=self.callback_within_min,
        )

"""The ``workorders`` section: the embedded ticket backend or the city's over HTTP."""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator

from cti.settings.base import FROZEN, Seconds
from cti.workorders.model import Ticket, TicketCallFacts, TicketDraft

__all__ = [
    "WORKORDERS_TOKEN_ENV",
    "WorkOrdersEmbeddedSettings",
    "WorkOrdersHttpSettings",
    "WorkOrdersSettings",
]


WORKORDERS_TOKEN_ENV: Final = "CTI_WORKORDERS_TOKEN"  # noqa: S105 - a variable's name

# what a work-order field map may rename: the top-level JSON names of a ticket, a draft
# and a call's facts (Ticket/TicketDraft/TicketCallFacts.to_json())
_TICKET_FIELDS: Final = frozenset(
    f.name for cls in (Ticket, TicketDraft, TicketCallFacts) for f in dataclasses.fields(cls)
)


class WorkOrdersEmbeddedSettings(BaseModel):
    """The embedded work-order backend: tickets in the CTI's own database."""

    model_config = FROZEN

    prefix: str = Field(
        default="12345",
        pattern=r"^[A-Za-z0-9]+$",
        max_length=16,
        description="First part of a ticket number, <prefix>-<YYYYMMDD>-<seq> "
        "(12345-20261127-000042): the hotline's number.",
    )


class WorkOrdersHttpSettings(BaseModel):
    """The city's work-order system over HTTP (docs/workorders.md has the contract)."""

    model_config = FROZEN

    base_url: str = Field(
        description="Base URL of the work-order API: http(s)://host[:port][/path]; the "
        "CTI calls <base_url>/tickets, <base_url>/tickets/{number}.",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token sent as `Authorization: Bearer <token>`; none = no "
        "Authorization header. In production set it with CTI_WORKORDERS_TOKEN.",
    )
    timeout_s: Seconds = Field(
        default=10.0,
        description="Deadline of one request, connecting and reading included, s.",
    )
    connect_timeout_s: Seconds = Field(
        default=3.0,
        validate_default=True,
        description="TCP connect + TLS handshake timeout, s (at most timeout_s).",
    )
    read_timeout_s: Seconds = Field(
        default=5.0,
        validate_default=True,
        description="Longest silence while sending a request or reading the answer, s "
        "(at most timeout_s).",
    )
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Our JSON field names (as in Ticket.to_json(): number, caller, "
        "line_name, ...) -> the backend's names, for request bodies, the `caller` query "
        "parameter and (reversed) the answers. Unlisted fields keep their names.",
    )
    verify_tls: bool = Field(
        default=True, description="Check the server's certificate (https). Keep it on."
    )
    ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA(s) to trust instead of the system's (a city CA); "
        "none = the system's trust store.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        m = re.fullmatch(r"(https?)://([^/?#@\s]+)(/[^?#\s]*)?", value)
        if m is None:
            msg = "must be http(s)://host[:port][/path], without user, query or fragment"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _header_safe_token(cls, value: SecretStr | None) -> SecretStr | None:
        # a newline or space (a copy-paste, an env file) would make every request fail
        if value is not None and not re.fullmatch(r"[\x21-\x7e]+", value.get_secret_value()):
            msg = "must be printable ASCII without spaces (check for a trailing newline)"
            raise ValueError(msg)
        return value

    @field_validator("connect_timeout_s", "read_timeout_s")
    @classmethod
    def _within_total(cls, value: float, info: ValidationInfo) -> float:
        total = info.data.get("timeout_s")
        if total is not None and value > total:
            msg = f"must be at most timeout_s ({total:g})"
            raise ValueError(msg)
        return value

    @field_validator("field_map")
    @classmethod
    def _check_field_map(cls, mapping: dict[str, str]) -> dict[str, str]:
        for ours in mapping:
            if ours not in _TICKET_FIELDS:
                guess = difflib.get_close_matches(ours, _TICKET_FIELDS, n=1, cutoff=0.6)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                msg = f"{ours!r} is not a ticket field{hint}; see docs/workorders.md"
                raise ValueError(msg)
        seen: dict[str, str] = {}
        for ours, theirs in mapping.items():
            if not theirs:
                msg = f"{ours}: the backend's name is empty"
                raise ValueError(msg)
            if theirs in seen:
                msg = f"{seen[theirs]} and {ours} both map to {theirs!r}"
                raise ValueError(msg)
            seen[theirs] = ours
            if theirs in _TICKET_FIELDS and theirs not in mapping:
                # `caller: line` alone would send two different fields as "line"
                msg = f"{ours} maps to {theirs!r}, which is our own field {theirs}: map it too"
                raise ValueError(msg)
        return mapping

    @field_validator("ca_file")
    @classmethod
    def _readable_ca_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("verify_tls") is False:
            msg = "has no effect with verify_tls: false"
            raise ValueError(msg)
        if not Path(value).is_file():
            msg = f"no such file: {value}"
            raise ValueError(msg)
        return value


class WorkOrdersSettings(BaseModel):
    """Where tickets (工单) go: the embedded backend or the city's system over HTTP."""

    model_config = FROZEN

    backend: Literal["embedded", "http"] = Field(
        default="embedded",
        description="embedded: tickets in the CTI's own database; http: the city's "
        "work-order system (the `http` section).",
    )
    embedded: WorkOrdersEmbeddedSettings = Field(
        default_factory=WorkOrdersEmbeddedSettings,
        description="The embedded backend (used when backend is embedded).",
    )
    retry_min_s: Seconds = Field(
        default=0.5,
        description="First retry delay of a ticket operation the backend did not take "
        "(down, timeout, 5xx), s; doubles per attempt, with jitter.",
    )
    retry_max_s: Seconds = Field(
        default=60.0,
        description="Longest retry delay, s (a backend's Retry-After is honoured up to it): "
        "how late, at most, the tickets of an outage are opened after the backend is back.",
    )
    http: WorkOrdersHttpSettings | None = Field(
        default=None,
        validate_default=True,  # so "required when backend is http" runs when it is absent
        description="The HTTP backend; required when backend is http.",
    )

    @field_validator("retry_max_s")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("retry_min_s")
        if low is not None and value < low:
            msg = f"must be at least retry_min_s ({low})"
            raise ValueError(msg)
        return value

    @field_validator("http")
    @classmethod
    def _http_when_chosen(
        cls, value: WorkOrdersHttpSettings | None, info: ValidationInfo
    ) -> WorkOrdersHttpSettings | None:
        if value is None and info.data.get("backend") == "http":
            msg = "required when backend is http (base_url at least)"
            raise ValueError(msg)
        return value

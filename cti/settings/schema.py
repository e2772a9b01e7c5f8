"""The configuration schema: layered, typed, validated and frozen.

Layers, lowest first: the defaults below < the YAML file (``config/cti.yaml``) < the
environment (``CTI_…``, mostly secrets). :func:`load_settings` merges them and validates the
result with pydantic; every problem is reported at once as a :class:`ConfigProblem` that
names the dotted field path and the YAML line, so a typo is an error, never a silent default.

Each adapter receives its own section (``settings.ami``, ``settings.mqtt``, …); there is no
global configuration object.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeAlias, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from cti.numberplan import NumberPlan
from cti.workorders.model import Ticket, TicketCallFacts, TicketDraft

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AmiNode",
    "AmiSettings",
    "ConfigError",
    "ConfigProblem",
    "DatabaseSettings",
    "DialplanSettings",
    "HttpScope",
    "HttpSettings",
    "HttpToken",
    "LoggingSettings",
    "MqttSettings",
    "Settings",
    "WorkOrdersEmbeddedSettings",
    "WorkOrdersHttpSettings",
    "WorkOrdersSettings",
    "http_token_env_var",
    "load_settings",
    "node_secret_env_var",
    "resolve_config_path",
    "settings_json_schema",
]

DEFAULT_CONFIG_PATH: Final = Path("config/cti.yaml")
"""Used when neither ``-c FILE`` nor ``$CTI_CONFIG`` names a file; relative to the cwd."""

_FROZEN: Final = ConfigDict(frozen=True, extra="forbid")
_DB_SCHEMES: Final = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
_AMI_KEY_HINT: Final = (
    "set CTI_AMI_SECRET (every node) or {var} (this node) in the environment, "
    "or `secret:` in the file (quoted)"
)

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]

WORKORDERS_TOKEN_ENV: Final = "CTI_WORKORDERS_TOKEN"  # noqa: S105 - a variable's name
# what a work-order field map may rename: the top-level JSON names of a ticket, a draft
# and a call's facts (Ticket/TicketDraft/TicketCallFacts.to_json())
_TICKET_FIELDS: Final = frozenset(
    f.name for cls in (Ticket, TicketDraft, TicketCallFacts) for f in dataclasses.fields(cls)
)


def node_secret_env_var(name: str) -> str:
    """Name of the environment variable holding the AMI secret of node *name*.

    ``main`` -> ``CTI_AMI_SECRET_MAIN``, ``pbx-2`` -> ``CTI_AMI_SECRET_PBX_2``.
    """
    return "CTI_AMI_SECRET_" + name.upper().replace("-", "_")


def http_token_env_var(name: str) -> str:
    """Name of the environment variable holding the HTTP bearer token *name*.

    ``supervisor`` -> ``CTI_HTTP_TOKEN_SUPERVISOR``, ``dispatch-110`` ->
    ``CTI_HTTP_TOKEN_DISPATCH_110``.
    """
    return "CTI_HTTP_TOKEN_" + name.upper().replace("-", "_")


# --------------------------------------------------------------------------- schema


class AmiNode(BaseModel):
    """One Asterisk server reached over AMI."""

    model_config = _FROZEN

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=32,
        description="Short id of this Asterisk node (lower-case slug), used in logs and env vars.",
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="AMI host.")
    port: int = Field(default=5038, ge=1, le=65535, description="AMI TCP port.")
    username: str = Field(min_length=1, description="AMI user ([section] in manager.conf).")
    secret: SecretStr = Field(
        min_length=1,
        description="AMI secret. In production set it with CTI_AMI_SECRET or "
        "CTI_AMI_SECRET_<NODE> instead of writing it in the file.",
    )
    connect_timeout: Seconds = Field(default=5.0, description="TCP connect + login timeout, s.")
    action_timeout: Seconds = Field(default=10.0, description="Wait for an action's reply, s.")
    # A frozen Asterisk (or a half-open socket) is noticed within ping_interval +
    # ping_timeout (5 s by default; measured: tests/real/test_readiness_real.py). Pings are
    # sent one after the other, so a timeout longer than the interval is fine.
    ping_interval: Seconds = Field(default=2.0, description="Send an AMI Ping this often, s.")
    ping_timeout: Seconds = Field(
        default=3.0,
        description="No Pong within this time means a dead connection, s; a dead Asterisk "
        "is noticed within ping_interval + ping_timeout.",
    )
    reconnect_min: Seconds = Field(default=0.5, description="First reconnect delay, s.")
    reconnect_max: Seconds = Field(
        default=30.0, validate_default=True, description="Cap of the reconnect delay, s."
    )
    encoding_fallback: str = Field(
        default="gb18030",
        description="Codec for AMI bytes that are not valid UTF-8 (old trunks send GBK).",
    )

    @field_validator("reconnect_max")
    @classmethod
    def _reconnect_max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("reconnect_min")
        if low is not None and value < low:
            msg = f"must be at least reconnect_min ({low:g})"
            raise ValueError(msg)
        return value

    @field_validator("encoding_fallback")
    @classmethod
    def _known_text_codec(cls, value: str) -> str:
        try:
            codecs.lookup(value)
            # lookup() also accepts bytes-to-bytes codecs (base64, zlib); decode() does not.
            b"a".decode(value, "replace")
        except LookupError as exc:
            msg = f"unknown text encoding {value!r} ({exc})"
            raise ValueError(msg) from exc
        return value


class AmiSettings(BaseModel):
    """The Asterisk Manager Interface connections."""

    model_config = _FROZEN

    # "at least one" is checked in _check_nodes, not with min_length: pydantic would also
    # report "0 items" for a list whose only node has an error.
    nodes: tuple[AmiNode, ...] = Field(
        description="Asterisk nodes, one or more.", json_schema_extra={"minItems": 1}
    )
    event_queue_size: int = Field(
        default=10000,
        ge=100,
        description="Bound of the queue between panoramisk's callback and the core.",
    )
    max_channels: int = Field(
        default=20000,
        ge=100,
        le=1_000_000,
        description="Channels tracked per node at most: past it a new call's channels are "
        "refused (counted, logged as call_tracker_full; the call falls back to the "
        "dialplan's Queue()). Legs of calls already tracked get 25 % more room.",
    )

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: tuple[AmiNode, ...]) -> tuple[AmiNode, ...]:
        if not nodes:
            msg = "at least one node is needed"
            raise ValueError(msg)
        seen: dict[str, int] = {}
        env_seen: dict[str, int] = {}
        for index, node in enumerate(nodes):
            if node.name in seen:
                msg = f"duplicate node name {node.name!r} (nodes {seen[node.name]} and {index})"
                raise ValueError(msg)
            seen[node.name] = index
            var = node_secret_env_var(node.name)
            if var in env_seen:
                msg = (
                    f"node names {nodes[env_seen[var]].name!r} and {node.name!r} "
                    f"share the environment variable {var}"
                )
                raise ValueError(msg)
            env_seen[var] = index
        return nodes


class MqttSettings(BaseModel):
    """The MQTT broker (screen-pops, seat state, agent commands)."""

    model_config = _FROZEN

    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    username: str | None = Field(default=None, description="Broker user, if it wants one.")
    password: SecretStr | None = Field(
        default=None, description="Broker password; better set with CTI_MQTT_PASSWORD."
    )
    prefix: str = Field(
        default="cti",
        min_length=1,
        description="Topic prefix: topics are <prefix>/seats/{seat}/pop, …",
    )
    client_id: str = Field(default="hotline-cti", min_length=1, description="MQTT client id.")
    keepalive: int = Field(default=30, ge=1, le=65535, description="MQTT keepalive, s.")

    @field_validator("password")
    @classmethod
    def _password_needs_username(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        # paho (under aiomqtt) silently drops a password that has no username.
        if value is not None and info.data.get("username") is None and "username" in info.data:
            msg = "a password needs a username (mqtt.username)"
            raise ValueError(msg)
        return value

    @field_validator("prefix")
    @classmethod
    def _plain_topic_prefix(cls, value: str) -> str:
        if "#" in value or "+" in value:
            msg = "must not contain the MQTT wildcards '#' or '+'"
            raise ValueError(msg)
        if value.startswith("/") or value.endswith("/"):
            msg = "must not start or end with '/'"
            raise ValueError(msg)
        return value


class DatabaseSettings(BaseModel):
    """Call records and audit trail."""

    model_config = _FROZEN

    url: str = Field(
        default="sqlite+aiosqlite:////var/lib/hotline-cti/cti.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:////abs/path.db (4 slashes = "
        "absolute path) or postgresql+asyncpg://user@host/db.",
    )
    heartbeat_s: Seconds = Field(
        default=2.0,
        description="Write the daemon's liveness row this often, s: after a crash it bounds "
        "when the calls lost sight of ended; its writes are also the database health check.",
    )
    degraded_after_failures: int = Field(
        default=2,
        ge=1,
        description="This many failed writes in a row (heartbeat or call records) make "
        "/readyz report the database not ready (a locked or failing database).",
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(_DB_SCHEMES):
            msg = "must start with " + " or ".join(_DB_SCHEMES)
            raise ValueError(msg)
        return value


class LoggingSettings(BaseModel):
    """Log output (structlog)."""

    model_config = _FROZEN

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level written."
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON when stderr is not a terminal, else console."
    )
    mask_numbers: bool = Field(
        default=True, description="Mask phone numbers in logs (personal data)."
    )

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class DialplanSettings(BaseModel):
    """What ``cti dialplan`` needs beyond the number plan: holding, fallback, connecting.

    The generated contexts and the variables the daemon uses are described in
    docs/dialplan.md. Ring timeout and wrap-up come from ``numberplan.queue``.
    """

    model_config = _FROZEN

    hold_timeout_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="A held call the daemon has not taken after this many seconds goes to "
        "the fallback Queue() (the daemon is down or lost the call).",
    )
    moh_class: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        max_length=80,
        description="musiconhold.conf class for holding, ringing and the fallback queue.",
    )
    recording_dir: str = Field(
        default="/var/spool/asterisk/monitor/hotline-cti",
        pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$",
        description="Absolute directory (on the Asterisk host) of the call recordings, "
        "<recording_dir>/<call id>.<recording_format>; MixMonitor creates it.",
    )
    recording_format: Literal["wav", "gsm", "wav49", "sln"] = Field(
        default="wav", description="Recording file format (and extension)."
    )
    dial_options: str = Field(
        default="mt",
        pattern=r"^[A-Za-z]*$",
        max_length=20,
        description="Dial() options when connecting a seat: m = the caller hears music while "
        "the seat rings, t = the seat may transfer (needed by AMI Atxfer).",
    )
    ivr_url: str = Field(
        default="agi://127.0.0.1:4573",
        pattern=r"^agi://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$",
        description="Where Asterisk reaches the daemon's FastAGI server (ivr.listen_*): "
        "the survey and the progress query run <ivr_url>/survey, <ivr_url>/progress.",
    )
    survey: bool = Field(
        default=False,
        description="After the agent hangs up, keep the caller for the one-key satisfaction "
        "survey (满意度评价): Dial gets the g option, then AGI(<ivr_url>/survey).",
    )
    blocked_prompt: str = Field(
        default="vm-goodbye",
        pattern=r"^[A-Za-z0-9_./-]+$",
        max_length=128,
        description="What a blacklisted caller (treatment reject) hears before the line is "
        "cleared (a sound file, no extension).",
    )
    callback_dial: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9/@._${}-]*\$\{EXTEN\}[A-Za-z0-9/@._${}-]*$",
        max_length=128,
        description="How a callback (漏接电话回拨) dials the citizen, ${EXTEN} = the number: "
        "PJSIP/${EXTEN}@carrier; none = over the number plan's first trunk.",
    )
    announce_every_s: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Waiting announcements (position and expected wait) every this many "
        "seconds to a call the daemon holds; 0 = none.",
    )
    announce_first_s: int = Field(
        default=30, ge=1, le=3600, description="The first announcement after this wait, s."
    )
    progress_number: str | None = Field(
        default=None,
        pattern=r"^[0-9]{3,20}$",
        description="A number citizens dial to hear their ticket's status (自助查询进度); "
        "none = no such number.",
    )
    fallback_skill_wait_s: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="In the fallback, a call needing a skill other than the general one "
        "waits this long in its skill's queue before it also goes to the general queue "
        "(0 = straight to the general queue).",
    )
    subcentre_timeout_s: int = Field(
        default=60,
        ge=1,
        le=600,
        description="A sub-centre line rings the external centre this long; unanswered, "
        "the call is answered by 12345 (general skill).",
    )
    agi_url: str | None = Field(
        default=None,
        pattern=r"^agis?://[A-Za-z0-9.:/_@-]+$",
        description="FastAGI run once after answering, before holding (announcements, "
        "survey opt-in), e.g. agi://127.0.0.1:4573/line; none = no AGI.",
    )


HttpScope = Literal["seats", "queue", "calls", "stats", "admin", "transfers110"]
"""What a bearer token may do. Flat: no scope implies another (docs/http-api.md)."""


class HttpToken(BaseModel):
    """One bearer token of the HTTP API and what it may do."""

    model_config = _FROZEN

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=32,
        description="Who holds the token (lower-case slug): logged with every request it "
        "makes, and names its environment variable CTI_HTTP_TOKEN_<NAME>.",
    )
    token: SecretStr = Field(
        min_length=24,
        description="The secret bearer token (24+ characters, e.g. `openssl rand -hex 32`). "
        "In production set it with CTI_HTTP_TOKEN_<NAME> instead of writing it in the file.",
    )
    scopes: tuple[HttpScope, ...] = Field(
        min_length=1,
        description="What the token may do: seats, queue, calls, stats, admin, transfers110.",
    )

    @field_validator("scopes")
    @classmethod
    def _unique_scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        doubled = sorted({s for s in scopes if scopes.count(s) > 1})
        if doubled:
            msg = f"scope listed twice: {', '.join(doubled)}"
            raise ValueError(msg)
        return scopes


class HttpSettings(BaseModel):
    """The HTTP API (JSON, bearer tokens with scopes), /metrics, /healthz and /readyz."""

    model_config = _FROZEN

    enabled: bool = Field(default=True, description="Serve the HTTP API.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to listen on; 0.0.0.0 for every interface (put TLS in front).",
    )
    port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="TCP port to listen on; 0 = any free port, logged in `http_listening` "
        "(tests, several daemons on one host).",
    )
    tokens: tuple[HttpToken, ...] = Field(
        default=(),
        description="Bearer tokens; none means every /api/v1 request gets 401.",
    )
    metrics_public: bool = Field(
        default=True,
        description="/metrics without a token (false: a token with the `stats` scope).",
    )
    max_body_bytes: int = Field(
        default=16384,
        ge=1024,
        le=1048576,
        description="Larger request bodies get 413.",
    )
    # Slow clients (issue 16): a connection that trickles its headers or body must not
    # hold a file descriptor for ever, nor starve AMI and FastAGI of theirs.
    max_connections: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Open HTTP connections at most; past it a new connection gets 503 and "
        "is closed at once. Must fit RLIMIT_NOFILE with room for AMI and FastAGI (checked "
        "at start).",
    )
    header_timeout_s: Seconds = Field(
        default=10.0,
        le=300,
        description="A request's line and headers must arrive within this, from the "
        "connection (or the previous response); else 408 and the connection is closed.",
    )
    body_timeout_s: Seconds = Field(
        default=10.0,
        le=300,
        description="The request body must arrive within this once the headers did; else 408.",
    )
    keepalive_timeout_s: Seconds = Field(
        default=5.0,
        le=300,
        description="An idle keep-alive connection is closed after this.",
    )
    max_header_bytes: int = Field(
        default=16384,
        ge=1024,
        le=1048576,
        description="Request line and headers larger than this get 400.",
    )

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, tokens: tuple[HttpToken, ...]) -> tuple[HttpToken, ...]:
        names: dict[str, int] = {}
        values: dict[str, int] = {}
        for index, tok in enumerate(tokens):
            var = http_token_env_var(tok.name)
            if var in names:
                msg = (
                    f"token names {tokens[names[var]].name!r} and {tok.name!r} "
                    f"share the environment variable {var}"
                )
                raise ValueError(msg)
            names[var] = index
            secret = tok.token.get_secret_value()
            if secret in values:
                # the API could not tell the two holders apart (logs, scopes)
                msg = f"tokens {tokens[values[secret]].name!r} and {tok.name!r} are the same"
                raise ValueError(msg)
            values[secret] = index
        return tokens


class WorkOrdersEmbeddedSettings(BaseModel):
    """The embedded work-order backend: tickets in the CTI's own database."""

    model_config = _FROZEN

    prefix: str = Field(
        default="12345",
        pattern=r"^[A-Za-z0-9]+$",
        max_length=16,
        description="First part of a ticket number, <prefix>-<YYYYMMDD>-<seq> "
        "(12345-20261127-000042): the hotline's number.",
    )


class WorkOrdersHttpSettings(BaseModel):
    """The city's work-order system over HTTP (docs/workorders.md has the contract)."""

    model_config = _FROZEN

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


Prompt = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_./-]+$",
        max_length=128,
        description="A sound file as Asterisk names it: no extension, relative to the sounds "
        "directory (hotline/survey-zh) or absolute.",
    ),
]


class SurveySettings(BaseModel):
    """The one-key satisfaction survey after the agent hangs up (一次一评)."""

    model_config = _FROZEN

    def __hash__(self) -> int:  # frozen, but its dict fields are not hashable as such
        return hash(json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False))

    prompt: Prompt = Field(default="beep", description='"Please rate: 1 very satisfied …"')
    invalid: Prompt = Field(default="pbx-invalid", description="A key not on the scale.")
    thanks: Prompt = Field(default="auth-thankyou", description="After a rating.")
    scale: dict[int, str] = Field(
        default_factory=lambda: {1: "非常满意", 2: "满意", 3: "基本满意", 4: "不满意"},
        description="Key -> rating stored on the ticket and the call record.",
    )
    unsatisfied: tuple[int, ...] = Field(
        default=(4,), description="Keys that flag the ticket (a return visit is owed)."
    )
    timeout_s: Seconds = Field(default=10.0, description="Wait for the key, s.")
    attempts: int = Field(default=2, ge=1, le=5, description="Tries before giving up.")

    @field_validator("scale")
    @classmethod
    def _keys_are_digits(cls, value: dict[int, str]) -> dict[int, str]:
        if not value or any(not 0 <= k <= 9 for k in value):
            msg = "keys must be single digits 0-9, at least one"
            raise ValueError(msg)
        return value

    @field_validator("unsatisfied")
    @classmethod
    def _unsatisfied_on_scale(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        scale = info.data.get("scale") or {}
        if missing := [k for k in value if k not in scale]:
            msg = f"keys not on the scale: {missing}"
            raise ValueError(msg)
        return value


class ProgressQuerySettings(BaseModel):
    """Self-service progress query (自助查询进度): a ticket number by DTMF, its status read."""

    model_config = _FROZEN

    def __hash__(self) -> int:  # frozen, but its dict fields are not hashable as such
        return hash(json.dumps(self.model_dump(), sort_keys=True, ensure_ascii=False))

    prompt: Prompt = Field(
        default="vm-enter-num-to-call", description='"Enter your ticket number, then #"'
    )
    not_found: Prompt = Field(default="vm-nonumber", description="No such ticket.")
    goodbye: Prompt = Field(default="vm-goodbye")
    status_prompts: dict[str, Prompt] = Field(
        default_factory=lambda: {
            "受理": "vm-received",
            "派单": "vm-forward",
            "签收": "vm-saved",
            "办理": "vm-review",
            "办结": "vm-msgsaved",
            "回访": "vm-tocallback",
            "归档": "vm-savedto",
        },
        description="Ticket status -> the sound that says it.",
    )
    unknown_status: Prompt = Field(
        default="vm-sorry", description="A status with no sound of its own."
    )
    timeout_s: Seconds = Field(default=15.0, description="Wait for the digits, s.")
    attempts: int = Field(default=3, ge=1, le=5)


class AnnounceSettings(BaseModel):
    """What a waiting caller hears (dialplan.announce_every_s turns it on)."""

    model_config = _FROZEN

    ahead: Prompt = Field(default="queue-thereare", description='"There are …"')
    calls_waiting: Prompt = Field(
        default="queue-callswaiting", description='"… calls waiting ahead of you"'
    )
    you_are_next: Prompt = Field(default="queue-youarenext", description="First in line.")
    hold_time: Prompt = Field(default="queue-holdtime", description='"The expected wait is …"')
    minutes: Prompt = Field(default="queue-minutes")
    less_than: Prompt = Field(default="queue-less-than", description='"less than" (1 minute)')
    thanks: Prompt = Field(default="queue-thankyou", description="Thanks for waiting.")
    max_wait_minutes: int = Field(
        default=30, ge=1, le=600, description="Longer expected waits are not announced."
    )


class CallbackOfferSettings(BaseModel):
    """After a waiting announcement: "press 1 to be called back, keeping your place"."""

    model_config = _FROZEN

    enabled: bool = Field(default=False, description="Offer it (needs announcements).")
    min_ewt_s: Seconds = Field(
        default=120.0,
        description="Offer it when the expected wait is at least this long, or unknown (no "
        "staffed seat can take the call), s.",
    )
    prompt: Prompt = Field(default="vm-tocallback", description='"Press 1 to be called back"')
    key: str = Field(default="1", pattern=r"^[0-9*#]$")
    message_key: str | None = Field(
        default=None,
        pattern=r"^[0-9*#]$",
        description="Overload voicemail: this key leaves a message instead (ivr.voicemail "
        "prompts); it goes on the call's ticket and the caller's wait ends. None = no "
        "such option. The prompt should name both keys.",
    )
    confirm: Prompt = Field(default="auth-thankyou", description="Before the line is cleared.")
    timeout_s: Seconds = Field(default=4.0, description="Wait for the key, s.")


class VoicemailSettings(BaseModel):
    """After hours (留言): a line outside its business hours takes a message, which becomes
    a ticket with the recording (docs/ivr.md)."""

    model_config = _FROZEN

    greeting: Prompt = Field(
        default="vm-intro", description='"We are closed; leave a message after the tone"'
    )
    goodbye: Prompt = Field(default="vm-goodbye", description="After the message.")
    max_s: int = Field(default=120, ge=5, le=600, description="Longest message, s.")
    silence_s: int = Field(
        default=5, ge=0, le=60, description="Silence that ends the message, s (0 = never)."
    )
    min_s: Seconds = Field(
        default=1.0,
        le=60,
        description="A message shorter than this (the caller hung up at the tone) makes no "
        "ticket, s.",
    )


class IvrSettings(BaseModel):
    """The daemon's FastAGI server and its flows (docs/ivr.md)."""

    model_config = _FROZEN

    enabled: bool = Field(default=True, description="Serve FastAGI.")
    listen_host: str = Field(default="127.0.0.1", description="FastAGI listen address.")
    listen_port: int = Field(default=4573, ge=0, le=65535, description="0 = any free port.")
    header_timeout_s: Seconds = Field(
        default=5.0, description="A client that has not sent its AGI headers by then is dropped."
    )
    command_timeout_s: Seconds = Field(default=30.0, description="Wait for one AGI answer, s.")
    max_sessions: int = Field(default=200, ge=1, le=10_000, description="Concurrent sessions.")
    survey: SurveySettings = Field(default_factory=SurveySettings)
    progress_query: ProgressQuerySettings = Field(default_factory=ProgressQuerySettings)
    announce: AnnounceSettings = Field(default_factory=AnnounceSettings)
    callback_offer: CallbackOfferSettings = Field(default_factory=CallbackOfferSettings)
    voicemail: VoicemailSettings = Field(default_factory=VoicemailSettings)


class Dispatch110FeedbackSettings(BaseModel):
    """Where the 110 system wants its status events by HTTP, besides MQTT."""

    model_config = _FROZEN

    url: str = Field(
        pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$",
        description="Each feedback event is POSTed here as JSON (Idempotency-Key: its "
        "event_id), in order per transfer, retried until 2xx (docs/dispatch110.md).",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the 110 side; better set with "
        "CTI_DISPATCH110_FEEDBACK_TOKEN.",
    )
    timeout_s: Seconds = Field(default=5.0, description="Deadline of one POST, s.")
    retry_max_s: Seconds = Field(
        default=60.0, description="Longest delay between retries while 110 is unreachable, s."
    )


class Dispatch110Settings(BaseModel):
    """110 ⇄ 12345: the push API's matching and the feedback to 110 (docs/dispatch110.md)."""

    model_config = _FROZEN

    match_window_s: Seconds = Field(
        default=300.0,
        description="A push and a call on the 110 line with the same caller number, this "
        "close in time, are one transfer (when the trunk carries no transfer id), s.",
    )
    feedback: Dispatch110FeedbackSettings | None = Field(
        default=None,
        description="The 110 side's webhook for feedback events; none = MQTT only "
        "(cti/110/feedback/{transfer_id}).",
    )


class WorkOrdersSettings(BaseModel):
    """Where tickets (工单) go: the embedded backend or the city's system over HTTP."""

    model_config = _FROZEN

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


class Settings(BaseModel):
    """The whole configuration of the daemon."""

    model_config = _FROZEN

    ami: AmiSettings
    mqtt: MqttSettings = MqttSettings()
    database: DatabaseSettings = DatabaseSettings()
    logging: LoggingSettings = LoggingSettings()
    numberplan: NumberPlan = Field(
        default_factory=NumberPlan,
        description="Lines, trunks, skills, seats, priority classes, hours, overflow steps.",
    )
    dialplan: DialplanSettings = Field(
        default_factory=DialplanSettings,
        description="Holding, fallback queue and connect settings of `cti dialplan`.",
    )
    http: HttpSettings = Field(
        default_factory=HttpSettings,
        description="HTTP API, /metrics, /healthz, /readyz (docs/http-api.md).",
    )
    workorders: WorkOrdersSettings = Field(
        default_factory=WorkOrdersSettings,
        description="The work-order (ticket) backend (docs/workorders.md).",
    )
    dispatch110: Dispatch110Settings = Field(
        default_factory=Dispatch110Settings,
        description="110 ⇄ 12345 transfers (docs/dispatch110.md).",
    )
    ivr: IvrSettings = Field(
        default_factory=IvrSettings,
        description="FastAGI: the satisfaction survey, the progress query (docs/ivr.md).",
    )


def settings_json_schema() -> dict[str, Any]:
    """JSON schema of the configuration file, for an editor (yaml-language-server)."""
    schema = Settings.model_json_schema()
    schema["title"] = "hotline-cti configuration (config/cti.yaml)"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    Attributes:
        path: dotted field path (``ami.nodes.0.secret``), or the file name for problems
            with the file as a whole (missing, not YAML).
        message: what is wrong, in pydantic's words plus a hint where one helps.
        line: 1-based line in the YAML file of the key, or of its nearest existing ancestor
            when the key itself is missing; ``None`` when the value came from elsewhere.
    """

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.path}: {self.message}{where}"


class ConfigError(Exception):
    """The configuration cannot be used; :attr:`problems` lists every reason."""

    def __init__(self, problems: list[ConfigProblem], *, path: Path | None = None) -> None:
        self.problems = problems
        self.path = path
        head = f"{len(problems)} configuration problem(s)" + (f" in {path}" if path else "")
        super().__init__("\n  ".join([head + ":", *map(str, problems)]))


# --------------------------------------------------------------------------- loading

_Loc: TypeAlias = tuple[str | int, ...]
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

# Limits of what the loader reads (docs/configuration.md, "Limits"): far above any real
# configuration, far below what hurts. Without them a 400-byte file of nested aliases (a
# "billion laughs") expands to 9**9 items in the line indexer (35 s, 3 GB, MemoryError),
# 5,000 nested `[` overflow the composer's recursion, and a 5,000-digit number is a
# ValueError from int() — each a traceback and exit 1 instead of a `config error:`.
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
MAX_YAML_DEPTH: Final = 64
MAX_YAML_NODES: Final = 200_000  # after aliases are expanded: a node per key, value, item
MAX_YAML_INT_DIGITS: Final = 100


class _TooBigError(Exception):
    """The YAML is beyond a loader limit: a message, and the line where it was noticed."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses absurd depth and absurd integers early."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # the composer recurses once per level: count levels before Python's stack does
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.line + 1  # the reader's position: where the depth was reached
                msg = f"nested more than {MAX_YAML_DEPTH} levels deep"
                raise _TooBigError(msg, line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_YAML_INT_DIGITS:
            msg = f"a number of {digits} digits (at most {MAX_YAML_INT_DIGITS})"
            raise _TooBigError(msg, node.start_mark.line + 1)
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has with every alias expanded (shared nodes counted once
    per use, memoised, so a bomb is measured without being expanded). Raises
    :class:`_TooBigError` beyond :data:`MAX_YAML_NODES`, or for an alias inside itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            msg = "an alias refers to a node that contains it (a recursive alias)"
            raise _TooBigError(msg, node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        active.discard(key)
        if total > MAX_YAML_NODES:
            msg = (
                f"more than {MAX_YAML_NODES:,} values once its aliases (*name) are "
                "expanded (an alias bomb?)"
            )
            raise _TooBigError(msg, node.start_mark.line + 1)
        sizes[key] = total
        return total

    return size(root)


def resolve_config_path(path: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The file to read: *path*, else ``$CTI_CONFIG``, else ``config/cti.yaml`` (cwd)."""
    if path is not None:
        return path
    env = os.environ if env is None else env
    from_env = env.get("CTI_CONFIG")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, layer and validate the configuration.

    Args:
        path: the YAML file; ``None`` means ``$CTI_CONFIG`` or ``config/cti.yaml``.
        env: the environment to take ``CTI_…`` overrides from (default ``os.environ``).

    Raises:
        ConfigError: with every problem found (file, YAML syntax, or validation).
    """
    env = os.environ if env is None else env
    file = resolve_config_path(path, env)
    data, lines, duplicates = _read(file)

    problems = [
        ConfigProblem(_dotted(loc), "duplicate key (the later one would win silently)", line)
        for loc, line in duplicates
    ]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(ConfigProblem(str(file), "the top level must be a mapping (key: value)", 1))
        raise ConfigError(problems, path=file)

    for section in Settings.model_fields:
        # `mqtt:` with every line below it commented out reads as null: mean the defaults.
        if section in data and data[section] is None:
            data[section] = {}
    env_sources = _apply_env(data, env, problems)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        names = _node_names(data)
        tokens = _token_names(data)
        problems.extend(_problem(err, lines, env_sources, names, tokens) for err in exc.errors())
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems, path=file)
    return settings


def _read(file: Path) -> tuple[Any, dict[_Loc, int], list[tuple[_Loc, int]]]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = ConfigProblem(str(file), "file not found (pass -c FILE or set CTI_CONFIG)")
        raise ConfigError([problem], path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(file), f"cannot read: {exc}")], path=file) from exc
    if len(text) > MAX_CONFIG_BYTES:
        msg = f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a configuration file?"
        raise ConfigError([ConfigProblem(str(file), msg)], path=file)
    try:
        return _parse_yaml(text)
    except _TooBigError as exc:
        problem = ConfigProblem(str(file), f"refused: {exc}", exc.line)
        raise ConfigError([problem], path=file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        problem = ConfigProblem(
            str(file), f"YAML syntax error: {what}", mark.line + 1 if mark else None
        )
        raise ConfigError([problem], path=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(str(file), f"YAML error: {exc}")], path=file) from exc


def _parse_yaml(text: str) -> tuple[Any, dict[_Loc, int], list[tuple[_Loc, int]]]:
    """``yaml.safe_load`` that also returns the line of every key and sequence item."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[_Loc, int] = {}
        duplicates: list[tuple[_Loc, int]] = []
        if node is not None:
            _expanded_size(node)  # before anything walks the aliases expanded
            # Walk before constructing: construction flattens `<<` merges in place.
            _index_lines(node, (), lines, duplicates, set())
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, lines, duplicates


def _index_lines(
    node: yaml.Node,
    loc: _Loc,
    lines: dict[_Loc, int],
    duplicates: list[tuple[_Loc, int]],
    active: set[int],
) -> None:
    if id(node) in active:  # a recursive alias; pydantic will complain about it
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*loc, key_node.value)
            if child in lines:
                duplicates.append((child, key_node.start_mark.line + 1))
                continue
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines, duplicates, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            lines[child] = item.start_mark.line + 1
            _index_lines(item, child, lines, duplicates, active)
    active.discard(id(node))


def _apply_env(
    data: dict[str, Any], env: Mapping[str, str], problems: list[ConfigProblem]
) -> dict[_Loc, str]:
    """Layer the ``CTI_…`` variables over *data* in place; return {path: variable}."""
    sources: dict[_Loc, str] = {}

    def put(loc: tuple[str, ...], var: str) -> None:
        if var not in env:
            return
        target: Any = data
        for key in loc[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                return  # the file has a wrong shape there; validation reports it
        target[loc[-1]] = env[var]
        sources[loc] = var

    put(("mqtt", "password"), "CTI_MQTT_PASSWORD")
    put(("database", "url"), "CTI_DATABASE_URL")
    put(("dispatch110", "feedback", "token"), "CTI_DISPATCH110_FEEDBACK_TOKEN")
    put(("logging", "level"), "CTI_LOG_LEVEL")
    _apply_http_token_env(data, env, sources, problems)
    _apply_workorders_token_env(data, env, sources, problems)

    ami = data.get("ami")
    nodes = ami.get("nodes") if isinstance(ami, dict) else None
    if not isinstance(nodes, list):
        return sources
    claimed: set[str] = set()
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        var = node_secret_env_var(name) if isinstance(name, str) else None
        if var is not None and var in env:
            node["secret"] = env[var]
            claimed.add(var)
        elif node.get("secret") is None and "CTI_AMI_SECRET" in env:
            node["secret"] = env["CTI_AMI_SECRET"]
            var = "CTI_AMI_SECRET"
        else:
            continue
        sources["ami", "nodes", index, "secret"] = var
    names = sorted(
        n["name"] for n in nodes if isinstance(n, dict) and isinstance(n.get("name"), str)
    )
    problems.extend(
        ConfigProblem(var, f"matches no node in ami.nodes (nodes: {', '.join(names) or 'none'})")
        for var in sorted(env)
        if var.startswith("CTI_AMI_SECRET_") and var not in claimed
    )
    return sources


def _apply_http_token_env(
    data: dict[str, Any],
    env: Mapping[str, str],
    sources: dict[_Loc, str],
    problems: list[ConfigProblem],
) -> None:
    """``CTI_HTTP_TOKEN_<NAME>`` sets the token of ``http.tokens[name=<name>]``.

    Only tokens listed in the file can be set (their scopes are configuration, not
    secrets); a variable that matches no listed token is a problem, not ignored.
    """
    http = data.get("http")
    tokens = http.get("tokens") if isinstance(http, dict) else None
    claimed: set[str] = set()
    names: list[str] = []
    if isinstance(tokens, list):
        for index, tok in enumerate(tokens):
            name = tok.get("name") if isinstance(tok, dict) else None
            if not isinstance(name, str):
                continue
            names.append(name)
            var = http_token_env_var(name)
            if var in env and isinstance(tok, dict):
                tok["token"] = env[var]
                claimed.add(var)
                sources["http", "tokens", index, "token"] = var
    problems.extend(
        ConfigProblem(
            var, f"matches no token in http.tokens (tokens: {', '.join(sorted(names)) or 'none'})"
        )
        for var in sorted(env)
        if var.startswith("CTI_HTTP_TOKEN_") and var not in claimed
    )


def _apply_workorders_token_env(
    data: dict[str, Any],
    env: Mapping[str, str],
    sources: dict[_Loc, str],
    problems: list[ConfigProblem],
) -> None:
    """``CTI_WORKORDERS_TOKEN`` sets ``workorders.http.token``; with no ``workorders.http``
    section in the file it is a problem (a token for no backend), not ignored."""
    if WORKORDERS_TOKEN_ENV not in env:
        return
    section = data.get("workorders")
    http = section.get("http") if isinstance(section, dict) else None
    if isinstance(http, dict):
        http["token"] = env[WORKORDERS_TOKEN_ENV]
        sources["workorders", "http", "token"] = WORKORDERS_TOKEN_ENV
    elif http is None:
        problems.append(
            ConfigProblem(WORKORDERS_TOKEN_ENV, "set, but the file has no workorders.http section")
        )
    # another shape: validation reports the section itself


def _node_names(data: Mapping[str, Any]) -> dict[int, str]:
    ami = data.get("ami")
    nodes = ami.get("nodes") if isinstance(ami, dict) else None
    if not isinstance(nodes, list):
        return {}
    return {
        index: node["name"]
        for index, node in enumerate(nodes)
        if isinstance(node, dict) and isinstance(node.get("name"), str)
    }


def _token_names(data: Mapping[str, Any]) -> dict[int, str]:
    http = data.get("http")
    tokens = http.get("tokens") if isinstance(http, dict) else None
    if not isinstance(tokens, list):
        return {}
    return {
        index: tok["name"]
        for index, tok in enumerate(tokens)
        if isinstance(tok, dict) and isinstance(tok.get("name"), str)
    }


def _problem(
    error: Any,
    lines: Mapping[_Loc, int],
    env_sources: Mapping[_Loc, str],
    node_names: Mapping[int, str],
    token_names: Mapping[int, str] | None = None,
) -> ConfigProblem:
    loc: _Loc = tuple(error["loc"])
    message: str = error["msg"].removeprefix("Value error, ")
    kind: str = error["type"]
    var = next((v for src, v in env_sources.items() if loc[: len(src)] == src), None)

    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
        if guess:
            message += f" (did you mean {guess[0]!r}?)"
    elif _is_node_secret(loc):
        name = node_names.get(loc[2]) if isinstance(loc[2], int) else None
        per_node = node_secret_env_var(name) if name else "CTI_AMI_SECRET_<NODE>"
        message += "; " + _AMI_KEY_HINT.format(var=per_node)
    elif _is_http_token(loc):
        name = (token_names or {}).get(loc[2]) if isinstance(loc[2], int) else None
        var_name = http_token_env_var(name) if name else "CTI_HTTP_TOKEN_<NAME>"
        message += f"; set {var_name} in the environment, or `token:` in the file (quoted)"
    elif kind != "missing" and not _is_secret(loc):
        shown = _short(error.get("input"))
        if shown is not None:
            message += f" (got {shown})"

    if var is not None:
        return ConfigProblem(_dotted(loc), f"{message} (from ${var})", None)
    return ConfigProblem(_dotted(loc), message, _line_of(loc, lines))


def _is_node_secret(loc: _Loc) -> bool:
    return len(loc) == 4 and loc[:2] == ("ami", "nodes") and loc[3] == "secret"


def _is_http_token(loc: _Loc) -> bool:
    return len(loc) == 4 and loc[:2] == ("http", "tokens") and loc[3] == "token"


def _is_secret(loc: _Loc) -> bool:
    return bool(loc) and loc[-1] in {"secret", "password", "token"}


def _short(value: object) -> str | None:
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return None


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(map(str, loc)) or "<top level>"


def _line_of(loc: _Loc, lines: Mapping[_Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def _fields_at(loc: _Loc) -> list[str]:
    """Field names of the model found at *loc* (``("ami", "nodes", 0)`` -> AmiNode's)."""
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return []
        model = found
    return list(model.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None

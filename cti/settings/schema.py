"""The configuration schema: the top-level :class:`Settings` and its small sections.

Every model is frozen and forbids unknown keys. The larger sections have modules of their
own (``dialplan``, ``http``, ``workorders``; the IVR flows' models live in the pure
:mod:`cti.ivr.config`, the number plan in :mod:`cti.numberplan`); this module composes
them. Each adapter receives its own section (``settings.ami``, ``settings.mqtt``, …); there
is no global configuration object.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cti.ivr.config import (
    AnnounceSettings,
    CallbackOfferSettings,
    ProgressQuerySettings,
    SurveySettings,
    VoicemailSettings,
)
from cti.numberplan import NumberPlan
from cti.settings.base import FROZEN, Seconds
from cti.settings.dialplan import DialplanSettings
from cti.settings.ha import HaSettings
from cti.settings.http import HttpSettings, RateLimit
from cti.settings.kpis import KpiSettings
from cti.settings.supervision import SupervisionSettings
from cti.settings.tls import TlsClientSettings
from cti.settings.web import WebSettings
from cti.settings.workorders import WorkOrdersSettings

__all__ = [
    "AmiNode",
    "AmiSettings",
    "DatabaseSettings",
    "Dispatch110FeedbackSettings",
    "Dispatch110Settings",
    "IvrSettings",
    "LoggingSettings",
    "MqttSettings",
    "Settings",
    "node_secret_env_var",
    "settings_json_schema",
]


_DB_SCHEMES: Final = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


def node_secret_env_var(name: str) -> str:
    """Name of the environment variable holding the AMI secret of node *name*.

    ``main`` -> ``CTI_AMI_SECRET_MAIN``, ``pbx-2`` -> ``CTI_AMI_SECRET_PBX_2``.
    """
    return "CTI_AMI_SECRET_" + name.upper().replace("-", "_")


class AmiNode(BaseModel):
    """One Asterisk server reached over AMI."""

    model_config = FROZEN

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
    # A county platform (县区平台) whose calls all go over its trunk to the city's node:
    # its legs are the same calls as the city's, recorded there (docs/county-nodes.md).
    transit: bool = Field(
        default=False,
        description="A node that only carries calls to another node over a trunk (a county "
        "platform): its calls are tracked but never stored as call records, tickets or KPIs "
        "(the receiving node's leg is the call).",
    )

    # The calls Asterisk's fallback Queue() took while the daemon was down leave no trace
    # but app_queue's queue_log (cti/kpis/fallback_log.py): this node's file, as the
    # daemon's host sees it, read for their KPI entries (outcome fallback).
    queue_log: Path | None = Field(
        default=None,
        description="This node's Asterisk queue_log file (e.g. /var/log/asterisk/queue_log), "
        "read for the calls its fallback queue took while the daemon was down (KPI outcome "
        "'fallback'); unset = those calls are not counted.",
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

    model_config = FROZEN

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
    drop_unread_events: bool = Field(
        default=True,
        description=(
            "Drop, unparsed, the unsolicited events the daemon never reads (those without a "
            "typed event in cti/events.py: AGIExec, Cdr, RTCP...) and the VarSets of the "
            "variables it never reads (DIALSTATUS, BRIDGEPEER...); false parses them all "
            "(docs/performance.md)."
        ),
    )
    filter_on_server: bool = Field(
        default=True,
        description=(
            "With drop_unread_events: also ask Asterisk (the AMI Filter action, advanced "
            "match criteria, Asterisk 22) to send only those events, so they cost no bytes "
            "or framing here. Needs the AMI user's `system` write permission; refused or an "
            "older Asterisk, it is logged and the daemon drops them itself as before."
        ),
    )
    max_channels: int = Field(
        default=20000,
        ge=100,
        le=1_000_000,
        description="Channels tracked per node at most: past it a new call's channels are "
        "refused (counted, logged as call_tracker_full; the call falls back to the "
        "dialplan's Queue()). Legs of calls already tracked get 25 % more room.",
    )
    # The lease (global CTI_LEASE_UNTIL, docs/reliability.md): after a SIGKILL the calls the
    # daemon had taken wait at most lease_s for the fallback Queue(). Shorter is faster, but
    # a stall longer than lease_s - lease_renew_s (a GC pause, a blocked event loop, a slow
    # AMI link) lets the lease run out under a live daemon and its calls fall back needlessly.
    lease_s: Seconds = Field(
        default=5.0,
        ge=2.0,
        le=300.0,
        description="The daemon's lease on the calls it has taken, s: if it dies, they go "
        "to the fallback Queue() at most this long after. At least twice lease_renew_s.",
    )
    lease_renew_s: Seconds = Field(
        default=1.0,
        ge=0.2,
        le=60.0,
        description="Renew the lease this often, s (one AMI Setvar per node); a stall longer "
        "than lease_s - lease_renew_s makes live calls fall back.",
    )

    @model_validator(mode="after")
    def _lease_outlives_renewal(self) -> AmiSettings:
        if self.lease_renew_s * 2 > self.lease_s:
            msg = (
                f"lease_s ({self.lease_s:g}) must be at least twice lease_renew_s "
                f"({self.lease_renew_s:g}): one late renewal must not end the lease"
            )
            raise ValueError(msg)
        return self

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


class BrokerAddress(BaseModel):
    """One more broker of `mqtt.failover` (issue 14)."""

    model_config = FROZEN

    host: str = Field(min_length=1, max_length=253, description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")


class MqttSettings(BaseModel):
    """The MQTT broker (screen-pops, seat state, agent commands)."""

    model_config = FROZEN

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
    # issue 15: TLS to the broker (cti/settings/tls.py) and the 110 push's rate limit
    tls: TlsClientSettings | None = Field(
        default=None,
        description="Connect with TLS (usually port 8883): the CA, a client certificate, "
        "the name checked; none = plain TCP. Also used by `cti seat-console`.",
    )
    # issue 14: a list of brokers, host:port first. Clients stay on the broker that works
    # (no flapping back); the brokers must share their topics (a Mosquitto bridge,
    # docs/mqtt.md "Several brokers"), or seats on the other one see nothing.
    failover: tuple[BrokerAddress, ...] = Field(
        default=(),
        max_length=8,
        description="Further brokers tried in order when the one in use cannot be reached "
        "(the daemon and `cti seat-console`); the same login, TLS and prefix on each.",
    )
    push110_rate_limit: RateLimit = Field(
        default=RateLimit(limit=120, window_s=60),
        description="Pushes on <prefix>/110/transfers (the topic; MQTT does not say who "
        "published): past it the push gets a rate_limited reply and is not stored; "
        "logged once per window. As http.push110_rate_limit, which is per token.",
    )

    def brokers(self) -> tuple[tuple[str, int], ...]:
        """Every broker in the order tried: host:port, then `failover`."""
        return ((self.host, self.port), *((b.host, b.port) for b in self.failover))

    @field_validator("failover")
    @classmethod
    def _failover_distinct(
        cls, value: tuple[BrokerAddress, ...], info: ValidationInfo
    ) -> tuple[BrokerAddress, ...]:
        seen = {(info.data.get("host"), info.data.get("port"))}
        for b in value:
            if (b.host, b.port) in seen:
                msg = f"broker {b.host}:{b.port} is listed twice"
                raise ValueError(msg)
            seen.add((b.host, b.port))
        return value

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

    model_config = FROZEN

    url: str = Field(
        default="sqlite+aiosqlite:////var/lib/hotline-cti/cti.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:////abs/path.db (4 slashes = "
        "absolute path) or postgresql+asyncpg://user@host/db.",
    )
    migrate: bool = Field(
        default=True,
        description="Upgrade the schema (Alembic migrations) when the daemon starts; false: "
        "refuse to start on a schema that is behind, and upgrade with `cti db upgrade`.",
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
    max_pending_rows: int = Field(
        default=200_000,
        ge=100,
        description="Rows (call records, seat events, queue entries, ticket operations) kept "
        "in memory while the database cannot be written (disk full, I/O error, locked), "
        "written when it recovers. At the cap the oldest are dropped, ticket operations "
        "last (each logged, all counted in /metrics). ~1 KB a row.",
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

    model_config = FROZEN

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


class IvrSettings(BaseModel):
    """The daemon's FastAGI server and its flows (docs/ivr.md)."""

    model_config = FROZEN

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

    model_config = FROZEN

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

    model_config = FROZEN

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


class Settings(BaseModel):
    """The whole configuration of the daemon."""

    model_config = FROZEN

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
    web: WebSettings = Field(
        default_factory=WebSettings,
        description="The browser pages' users, roles, sessions (docs/console.md).",
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
    kpis: KpiSettings = Field(
        default_factory=KpiSettings,
        description="KPI thresholds and time zone of cti report / the stats API (docs/kpis.md).",
    )
    ha: HaSettings = Field(
        default_factory=HaSettings,
        description="Active/standby pair on one PostgreSQL (docs/high-availability.md).",
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="asyncio",
        description=(
            "The daemon's event loop: auto = uvloop when installed, else asyncio; uvloop = "
            "uvloop (asyncio, with a log line, when not installed); asyncio = the standard loop "
            "(docs/performance.md)."
        ),
    )
    supervision: SupervisionSettings = Field(
        default_factory=SupervisionSettings,
        description="Supervisors: listen/whisper/barge, forced seat states (docs/supervision.md).",
    )

    @model_validator(mode="after")
    def _ha_needs_postgresql(self) -> Settings:
        if self.ha.enabled and not self.database.url.startswith("postgresql"):
            msg = (
                "ha.enabled needs database.url on PostgreSQL (postgresql+asyncpg://...): "
                "the lease and its fencing live in the shared database; SQLite is one daemon"
            )
            raise ValueError(msg)
        return self


def settings_json_schema() -> dict[str, Any]:
    """JSON schema of the configuration file, for an editor (yaml-language-server)."""
    schema = Settings.model_json_schema()
    schema["title"] = "hotline-cti configuration (config/cti.yaml)"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}

"""The configuration: layered, typed, validated and frozen.

Layers, lowest first: the models' defaults < the YAML file (``config/cti.yaml``) < the
environment (``CTI_…``, mostly secrets). What lives where:

- :mod:`cti.settings.schema` — :class:`Settings` and its small sections (ami, mqtt,
  database, logging, ivr, dispatch110); :mod:`~cti.settings.dialplan`,
  :mod:`~cti.settings.http` and :mod:`~cti.settings.workorders` hold the larger ones,
  :mod:`~cti.settings.tls` the TLS options of ``http.tls`` and ``mqtt.tls``. The
  IVR flows' models are in the pure :mod:`cti.ivr.config`, the number plan in
  :mod:`cti.numberplan`, so the pure packages never import this package (it loads yaml).
- :mod:`cti.settings.load` — :func:`load_settings`: file, then environment
  (:mod:`~cti.settings.env`), validated at once; :mod:`~cti.settings.yamlfile` reads the
  YAML with line numbers and limits; :mod:`~cti.settings.errors` has :class:`ConfigError`.

Everything public is re-exported here: ``from cti.settings import X``.
"""

from __future__ import annotations

from cti.ivr.config import (
    AnnounceSettings,
    CallbackOfferSettings,
    ProgressQuerySettings,
    SurveySettings,
    VoicemailSettings,
)
from cti.settings.dialplan import DialplanSettings
from cti.settings.errors import ConfigError, ConfigProblem
from cti.settings.ha import HaSettings
from cti.settings.http import (
    HttpScope,
    HttpSettings,
    HttpToken,
    RateLimit,
    http_token_env_var,
)
from cti.settings.load import DEFAULT_CONFIG_PATH, load_settings, resolve_config_path
from cti.settings.schema import (
    AmiNode,
    AmiSettings,
    DatabaseSettings,
    Dispatch110FeedbackSettings,
    Dispatch110Settings,
    IvrSettings,
    LoggingSettings,
    MqttSettings,
    Settings,
    node_secret_env_var,
    settings_json_schema,
)
from cti.settings.tls import TlsClientSettings, TlsServerSettings
from cti.settings.web import WebRole, WebSettings, WebUser
from cti.settings.workorders import (
    WORKORDERS_TOKEN_ENV,
    WorkOrdersEmbeddedSettings,
    WorkOrdersHttpSettings,
    WorkOrdersSettings,
)
from cti.settings.yamlfile import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_INT_DIGITS,
    MAX_YAML_NODES,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_INT_DIGITS",
    "MAX_YAML_NODES",
    "WORKORDERS_TOKEN_ENV",
    "AmiNode",
    "AmiSettings",
    "AnnounceSettings",
    "CallbackOfferSettings",
    "ConfigError",
    "ConfigProblem",
    "DatabaseSettings",
    "DialplanSettings",
    "Dispatch110FeedbackSettings",
    "Dispatch110Settings",
    "HaSettings",
    "HttpScope",
    "HttpSettings",
    "HttpToken",
    "IvrSettings",
    "LoggingSettings",
    "MqttSettings",
    "ProgressQuerySettings",
    "RateLimit",
    "Settings",
    "SurveySettings",
    "TlsClientSettings",
    "TlsServerSettings",
    "VoicemailSettings",
    "WebRole",
    "WebSettings",
    "WebUser",
    "WorkOrdersEmbeddedSettings",
    "WorkOrdersHttpSettings",
    "WorkOrdersSettings",
    "http_token_env_var",
    "load_settings",
    "node_secret_env_var",
    "resolve_config_path",
    "settings_json_schema",
]

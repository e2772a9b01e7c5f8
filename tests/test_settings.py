"""cti.settings: layering, validation, and problems that name path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest
import yaml

from cti.ivr import config as ivr_config
from cti.settings import (
    DEFAULT_CONFIG_PATH,
    AmiNode,
    ConfigError,
    ConfigProblem,
    MqttSettings,
    Settings,
    load_settings,
    node_secret_env_var,
    resolve_config_path,
    settings_json_schema,
)

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """\
ami:
  nodes:
    - name: main
      username: cti
      secret: s3cret
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cti.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={} if env is None else env)
    return info.value.problems


def by_path(found: list[ConfigProblem]) -> dict[str, ConfigProblem]:
    return {p.path: p for p in found}


# --------------------------------------------------------------------------- valid files


def test_shipped_example_is_valid() -> None:
    settings = load_settings(REPO / "config" / "cti.yaml", env={})
    (node,) = settings.ami.nodes
    assert (node.name, node.host, node.port, node.username) == ("main", "127.0.0.1", 5038, "cti")
    assert node.secret.get_secret_value() == "ctisecret"
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.prefix) == (
        "127.0.0.1",
        1883,
        "cti",
    )
    assert settings.database.url.startswith("sqlite+aiosqlite://")
    assert (settings.logging.level, settings.logging.format) == ("info", "auto")
    assert settings.workorders.backend == "embedded"
    assert settings.workorders.embedded.prefix == "12345"
    assert settings.workorders.http is None


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    node = settings.ami.nodes[0]
    assert (node.host, node.port, node.encoding_fallback) == ("127.0.0.1", 5038, "gb18030")
    assert (node.ping_interval, node.ping_timeout) == (2.0, 3.0)
    assert settings.ami.event_queue_size == 10000
    assert settings.mqtt.client_id == "hotline-cti"
    assert settings.mqtt.password is None
    assert settings.logging.mask_numbers is True


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    with pytest.raises(pydantic.ValidationError):
        settings.ami.nodes[0].port = 1
    assert hash(settings) == hash(load_settings(write(tmp_path, MINIMAL), env={}))


def test_secret_is_not_shown_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={})
    assert "s3cret" not in repr(settings)


# --------------------------------------------------------------------------- environment


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + "mqtt:\n  username: cti\n  password: from-file\n"
        + "logging:\n  level: warning\n",
    )
    env = {
        "CTI_MQTT_PASSWORD": "from-env",
        "CTI_DATABASE_URL": "postgresql+asyncpg://cti@db/cti",
        "CTI_LOG_LEVEL": "DEBUG",
    }
    settings = load_settings(path, env=env)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-env"
    assert settings.database.url == "postgresql+asyncpg://cti@db/cti"
    assert settings.logging.level == "debug"


def test_ami_secret_from_env(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ami:
          nodes:
            - {name: main, username: cti}
            - {name: pbx-2, username: cti, secret: in-file}
            - {name: spare, username: cti}
        """,
    )
    env = {"CTI_AMI_SECRET": "shared", "CTI_AMI_SECRET_SPARE": "own"}
    secrets = [n.secret.get_secret_value() for n in load_settings(path, env=env).ami.nodes]
    # CTI_AMI_SECRET fills only the gaps; CTI_AMI_SECRET_<NODE> wins over everything.
    assert secrets == ["shared", "in-file", "own"]
    env = {"CTI_AMI_SECRET_PBX_2": "own2", "CTI_AMI_SECRET": "shared"}
    secrets = [n.secret.get_secret_value() for n in load_settings(path, env=env).ami.nodes]
    assert secrets == ["shared", "own2", "shared"]


def test_node_secret_env_var_name() -> None:
    assert node_secret_env_var("main") == "CTI_AMI_SECRET_MAIN"
    assert node_secret_env_var("pbx-2") == "CTI_AMI_SECRET_PBX_2"


def test_env_secret_for_unknown_node_is_a_problem(tmp_path: Path) -> None:
    found = problems(write(tmp_path, MINIMAL), {"CTI_AMI_SECRET_MIAN": "x"})
    assert [str(p) for p in found] == [
        "CTI_AMI_SECRET_MIAN: matches no node in ami.nodes (nodes: main)"
    ]


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, MINIMAL), {"CTI_DATABASE_URL": "mysql://db/cti"})
    assert problem.path == "database.url"
    assert problem.line is None
    assert "$CTI_DATABASE_URL" in problem.message
    assert "sqlite+aiosqlite://" in problem.message


def test_config_path_resolution(tmp_path: Path) -> None:
    assert resolve_config_path(None, {}) == DEFAULT_CONFIG_PATH == Path("config/cti.yaml")
    assert resolve_config_path(None, {"CTI_CONFIG": "/etc/cti.yaml"}) == Path("/etc/cti.yaml")
    explicit = tmp_path / "x.yaml"
    assert resolve_config_path(explicit, {"CTI_CONFIG": "/etc/cti.yaml"}) == explicit
    path = write(tmp_path, MINIMAL)
    assert load_settings(None, env={"CTI_CONFIG": str(path)}).ami.nodes[0].name == "main"


# --------------------------------------------------------------------------- problems


def test_all_problems_at_once_with_paths_and_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ami:
          nodes:
            - name: main
              hots: 10.0.0.1
              port: "abc"
              username: cti
        """,
    )
    found = by_path(problems(path))
    assert set(found) == {"ami.nodes.0.hots", "ami.nodes.0.port", "ami.nodes.0.secret"}
    assert found["ami.nodes.0.hots"].line == 4
    assert "Extra inputs are not permitted" in found["ami.nodes.0.hots"].message
    assert "did you mean 'host'" in found["ami.nodes.0.hots"].message
    assert found["ami.nodes.0.port"].line == 5
    assert "valid integer" in found["ami.nodes.0.port"].message
    # The missing key has no line of its own: the line of its node.
    assert found["ami.nodes.0.secret"].line == 3
    assert "CTI_AMI_SECRET" in found["ami.nodes.0.secret"].message
    assert "CTI_AMI_SECRET_MAIN" in found["ami.nodes.0.secret"].message


def test_problem_str() -> None:
    problem = ConfigProblem("ami.nodes.0.secret", "Field required", 12)
    assert str(problem) == "ami.nodes.0.secret: Field required (line 12)"
    assert str(ConfigProblem("x.yaml", "file not found")) == "x.yaml: file not found"


def test_empty_section_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL + "mqtt:\n  # host: x\nlogging:\n"), env={})
    assert settings.mqtt.host == "127.0.0.1"
    assert settings.logging.level == "info"


def test_missing_ami_section(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "logging:\n  level: info\n"))
    assert (problem.path, problem.message) == ("ami", "Field required")


def test_empty_file_is_missing_ami(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "# nothing yet\n"))
    assert problem.path == "ami"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "- a\n- b\n"))
    assert "mapping" in problem.message


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ami:
          nodes:
            - name: main
              username: cti
             secret: oops
        """,
    )
    (problem,) = problems(path)
    assert problem.path == str(path)
    assert problem.message.startswith("YAML syntax error")
    assert problem.line == 5


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    (problem,) = problems(path)
    assert problem.path == str(path)
    assert "not found" in problem.message
    assert problem.line is None


def test_duplicate_node_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ami:
          nodes:
            - {name: main, username: cti, secret: a}
            - {name: main, username: cti, secret: b}
        """,
    )
    (problem,) = problems(path)
    assert problem.path == "ami.nodes"
    assert "duplicate node name 'main'" in problem.message
    assert problem.line == 2


def test_node_names_that_share_an_env_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        ami:
          nodes:
            - {name: pbx-1, username: cti, secret: a}
            - {name: pbx_1, username: cti, secret: b}
        """,
    )
    (problem,) = problems(path)
    assert "CTI_AMI_SECRET_PBX_1" in problem.message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, MINIMAL + "logging:\n  level: info\n  level: debug\n"))
    assert (problem.path, problem.line) == ("logging.level", 8)
    assert "duplicate key" in problem.message


def test_no_nodes(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "ami:\n  nodes: []\n"))
    assert problem.path == "ami.nodes"
    assert "at least one" in problem.message


@pytest.mark.parametrize(
    ("snippet", "path", "needle"),
    [
        ("name: Main", "ami.nodes.0.name", "pattern"),
        ("port: 70000", "ami.nodes.0.port", "less than or equal"),
        ("username: ''", "ami.nodes.0.username", "at least 1"),
        ("secret: ''", "ami.nodes.0.secret", "at least 1"),
        ("reconnect_min: 60", "ami.nodes.0.reconnect_max", "at least reconnect_min"),
        ("connect_timeout: 0", "ami.nodes.0.connect_timeout", "greater than 0"),
        ("encoding_fallback: klingon", "ami.nodes.0.encoding_fallback", "unknown"),
        ("encoding_fallback: base64", "ami.nodes.0.encoding_fallback", "not a text encoding"),
    ],
)
def test_node_field_checks(tmp_path: Path, snippet: str, path: str, needle: str) -> None:
    node = {"name": "main", "username": "cti", "secret": "s"} | yaml.safe_load(snippet)
    text = yaml.safe_dump({"ami": {"nodes": [node]}})
    found = by_path(problems(write(tmp_path, text)))
    assert path in found, found
    assert needle in found[path].message


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    text = MINIMAL.replace("secret: s3cret", "secret: [s3cret]")
    (problem,) = problems(write(tmp_path, text))
    assert problem.path == "ami.nodes.0.secret"
    assert "s3cret" not in str(problem)


@pytest.mark.parametrize(
    ("section", "path", "needle"),
    [
        ("mqtt:\n  prefix: cti/#\n", "mqtt.prefix", "wildcards"),
        ("mqtt:\n  prefix: /cti\n", "mqtt.prefix", "start or end"),
        ("mqtt:\n  password: x\n", "mqtt.password", "needs a username"),
        ("mqtt:\n  port: 0\n", "mqtt.port", "greater than or equal"),
        ("database:\n  url: sqlite:///x.db\n", "database.url", "must start with"),
        ("logging:\n  level: verbose\n", "logging.level", "'debug'"),
        ("logging:\n  format: xml\n", "logging.format", "'json'"),
        ("ami:\n  event_queue_size: 10\n", "ami.event_queue_size", "100"),
        ("mqtt:\n  hots: x\n", "mqtt.hots", "did you mean 'host'"),
        ("mqqt:\n  host: x\n", "mqqt", "did you mean 'mqtt'"),
    ],
)
def test_section_checks(tmp_path: Path, section: str, path: str, needle: str) -> None:
    # MINIMAL ends inside `ami:`, so an ami key is appended without its section line.
    text = MINIMAL + section.removeprefix("ami:\n")
    found = by_path(problems(write(tmp_path, text)))
    assert path in found, found
    assert needle in found[path].message


def test_model_rejects_unknown_fields_directly() -> None:
    with pytest.raises(pydantic.ValidationError):
        AmiNode.model_validate({"name": "a", "username": "u", "secret": "s", "hots": "x"})


def test_json_schema() -> None:
    schema = settings_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["required"] == ["ami"]
    assert schema["additionalProperties"] is False
    node = schema["$defs"]["AmiNode"]
    assert node["additionalProperties"] is False
    assert set(node["required"]) == {"name", "username", "secret"}
    assert schema["$defs"]["AmiSettings"]["properties"]["nodes"]["minItems"] == 1
    assert set(schema["properties"]) == set(Settings.model_fields)


# --------------------------------------------------------------------------- workorders

WORKORDERS_HTTP = """\
workorders:
  backend: http
  http:
    base_url: https://gongdan.example.gov.cn/api/v1/
    field_map: {number: ticket_no, caller: phone}
"""


def test_workorders_default_to_the_embedded_backend(tmp_path: Path) -> None:
    wo = load_settings(write(tmp_path, MINIMAL), env={}).workorders
    assert (wo.backend, wo.embedded.prefix, wo.http) == ("embedded", "12345", None)


def test_workorders_http_backend(tmp_path: Path) -> None:
    wo = load_settings(write(tmp_path, MINIMAL + WORKORDERS_HTTP), env={}).workorders
    assert wo.backend == "http"
    assert wo.http is not None
    assert wo.http.base_url == "https://gongdan.example.gov.cn/api/v1"  # no trailing /
    assert wo.http.token is None
    assert (wo.http.timeout_s, wo.http.connect_timeout_s, wo.http.read_timeout_s) == (
        10.0,
        3.0,
        5.0,
    )
    assert (wo.http.verify_tls, wo.http.ca_file) == (True, None)
    assert wo.http.field_map == {"number": "ticket_no", "caller": "phone"}


def test_workorders_token_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + WORKORDERS_HTTP + "    token: in-file\n")
    wo = load_settings(path, env={"CTI_WORKORDERS_TOKEN": "from-env"}).workorders
    assert wo.http is not None
    assert wo.http.token is not None
    assert wo.http.token.get_secret_value() == "from-env"
    assert "from-env" not in repr(wo)


def test_workorders_token_env_without_an_http_section_is_a_problem(tmp_path: Path) -> None:
    found = problems(write(tmp_path, MINIMAL), {"CTI_WORKORDERS_TOKEN": "x"})
    assert [str(p) for p in found] == [
        "CTI_WORKORDERS_TOKEN: set, but the file has no workorders.http section"
    ]


def test_a_bad_workorders_token_from_env_names_the_variable(tmp_path: Path) -> None:
    found = problems(write(tmp_path, MINIMAL + WORKORDERS_HTTP), {"CTI_WORKORDERS_TOKEN": "t\n"})
    message = "must be printable ASCII without spaces (check for a trailing newline)"
    assert [str(p) for p in found] == [
        f"workorders.http.token: {message} (from $CTI_WORKORDERS_TOKEN)"
    ]


def test_workorders_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "city-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    path = write(tmp_path, MINIMAL + WORKORDERS_HTTP + f"    ca_file: {ca}\n")
    wo = load_settings(path, env={}).workorders
    assert wo.http is not None
    assert wo.http.ca_file == str(ca)


@pytest.mark.parametrize(
    ("section", "path", "needle"),
    [
        ("  backend: http\n", "workorders.http", "required when backend is http"),
        ("  backend: jira\n", "workorders.backend", "'embedded' or 'http'"),
        ("  embedded: {prefix: 12-345}\n", "workorders.embedded.prefix", "pattern"),
        ("  embedded: {prefix: 12345}\n", "workorders.embedded.prefix", "valid string"),
        ("  embeded: {}\n", "workorders.embeded", "did you mean 'embedded'"),
        ("  http: {}\n", "workorders.http.base_url", "Field required"),
        ("  http: {base_url: 'ftp://x'}\n", "workorders.http.base_url", "http(s)://"),
        ("  http: {base_url: 'http://u:p@x'}\n", "workorders.http.base_url", "without user"),
        ("  http: {base_url: 'http://x/?a=1'}\n", "workorders.http.base_url", "query"),
        ("  http: {base_url: 'http://x', tokn: y}\n", "workorders.http.tokn", "'token'"),
        ("  http: {base_url: 'http://x', token: 'a b'}\n", "workorders.http.token", "spaces"),
        (
            "  http: {base_url: 'http://x', timeout_s: 0}\n",
            "workorders.http.timeout_s",
            "greater than 0",
        ),
        (
            "  http: {base_url: 'http://x', timeout_s: 2}\n",
            "workorders.http.connect_timeout_s",
            "at most timeout_s (2)",
        ),
        (
            "  http: {base_url: 'http://x', read_timeout_s: 11}\n",
            "workorders.http.read_timeout_s",
            "at most timeout_s (10)",
        ),
        (
            "  http: {base_url: 'http://x', field_map: {caler: phone}}\n",
            "workorders.http.field_map",
            "'caler' is not a ticket field (did you mean 'caller'?)",
        ),
        (
            "  http: {base_url: 'http://x', field_map: {caller: line}}\n",
            "workorders.http.field_map",
            "which is our own field line",
        ),
        (
            "  http: {base_url: 'http://x', field_map: {caller: phone, line: phone}}\n",
            "workorders.http.field_map",
            "caller and line both map to 'phone'",
        ),
        (
            "  http: {base_url: 'http://x', field_map: {caller: ''}}\n",
            "workorders.http.field_map",
            "empty",
        ),
        (
            "  http: {base_url: 'http://x', ca_file: /no/such.pem}\n",
            "workorders.http.ca_file",
            "no such file",
        ),
        (
            "  http: {base_url: 'http://x', verify_tls: false, ca_file: /no/such.pem}\n",
            "workorders.http.ca_file",
            "no effect with verify_tls: false",
        ),
    ],
)
def test_workorders_checks(tmp_path: Path, section: str, path: str, needle: str) -> None:
    found = by_path(problems(write(tmp_path, MINIMAL + "workorders:\n" + section)))
    assert path in found, found
    assert needle in found[path].message


def test_a_swapped_field_map_is_fine(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "workorders:\n  http: {base_url: 'http://x', field_map: {caller: line, line: caller}}\n"
    )
    wo = load_settings(write(tmp_path, text), env={}).workorders
    assert wo.http is not None
    assert wo.http.field_map == {"caller": "line", "line": "caller"}


def test_workorders_retry_delays(tmp_path: Path) -> None:
    wo = load_settings(write(tmp_path, MINIMAL), env={}).workorders
    assert (wo.retry_min_s, wo.retry_max_s) == (0.5, 60.0)
    found = problems(
        write(tmp_path, MINIMAL + "workorders: {retry_min_s: 5, retry_max_s: 2}\n"), {}
    )
    assert [str(p) for p in found] == [
        "workorders.retry_max_s: must be at least retry_min_s (5.0) (got 2) (line 6)"
    ]


def test_the_ivr_sections_are_the_pure_models_the_flows_take(tmp_path: Path) -> None:
    # cti.ivr.flows takes cti.ivr.config's models (no yaml); the file's ivr.* are the same
    text = MINIMAL + "ivr:\n  survey: {attempts: 3}\n  voicemail: {max_s: 60}\n"
    ivr = load_settings(write(tmp_path, text), env={}).ivr
    assert type(ivr.survey) is ivr_config.SurveySettings
    assert type(ivr.progress_query) is ivr_config.ProgressQuerySettings
    assert type(ivr.announce) is ivr_config.AnnounceSettings
    assert type(ivr.callback_offer) is ivr_config.CallbackOfferSettings
    assert type(ivr.voicemail) is ivr_config.VoicemailSettings
    assert (ivr.survey.attempts, ivr.voicemail.max_s) == (3, 60)


def test_mqtt_failover_lists_the_brokers_in_order_and_refuses_a_repeat() -> None:
    s = MqttSettings.model_validate(
        {"host": "mq1", "port": 1883, "failover": [{"host": "mq2"}, {"host": "mq3", "port": 8883}]}
    )
    assert s.brokers() == (("mq1", 1883), ("mq2", 1883), ("mq3", 8883))
    assert MqttSettings().brokers() == (("127.0.0.1", 1883),)
    with pytest.raises(ValueError, match="broker mq1:1883 is listed twice"):
        MqttSettings.model_validate({"host": "mq1", "failover": [{"host": "mq1"}]})
    with pytest.raises(ValueError, match="broker mq2:1 is listed twice"):
        MqttSettings.model_validate(
            {"host": "mq1", "failover": [{"host": "mq2", "port": 1}, {"host": "mq2", "port": 1}]}
        )

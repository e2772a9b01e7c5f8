"""http.tls and mqtt.tls (issue 15): good files give the contexts the adapters use; a
missing, malformed or mismatched file is a `config error:` at start (exit 2), naming the
field and the file, never a traceback."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cti import cli
from cti.settings import ConfigError, load_settings

BASE = {"ami": {"nodes": [{"name": "main", "username": "cti", "secret": "s"}]}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate signed by it and a second key (openssl, as the testbed)."""
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=t-ca",
         "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-out", "server.crt")  # fmt: skip
    ossl("genrsa", "-out", "other.key", "2048")
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n", encoding="utf-8")
    return d


def config(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "cti.yaml"
    path.write_text(yaml.safe_dump({**BASE, **sections}), encoding="utf-8")
    return path


def test_good_files_give_the_adapters_contexts(tmp_path: Path, pki: Path) -> None:
    http_tls = {
        "certfile": str(pki / "server.crt"),
        "keyfile": str(pki / "server.key"),
        "client_ca": str(pki / "ca.crt"),
    }
    mqtt_tls = {"ca": str(pki / "ca.crt"), "server_name": "localhost"}
    s = load_settings(config(tmp_path, http={"tls": http_tls}, mqtt={"tls": mqtt_tls}), env={})
    assert s.http.tls is not None
    server = s.http.tls.server_context()
    assert server.verify_mode == ssl.CERT_REQUIRED  # mutual TLS with client_ca
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert s.mqtt.tls is not None
    client = s.mqtt.tls.client_context()
    assert client.check_hostname
    assert client.verify_mode == ssl.CERT_REQUIRED
    # the default: neither listener nor broker connection uses TLS
    plain = load_settings(config(tmp_path), env={})
    assert plain.http.tls is None
    assert plain.mqtt.tls is None


@pytest.mark.parametrize(
    ("section", "tls", "expected"),
    [
        ("http", {"certfile": "missing.crt", "keyfile": "server.key"},
         "http.tls: cannot load certfile/keyfile 'PKI/missing.crt': No such file or directory"),
        ("http", {"certfile": "server.crt", "keyfile": "other.key"},
         "http.tls: cannot load certfile/keyfile 'PKI/server.crt': [X509: KEY_VALUES_MISMATCH]"),
        ("http", {"certfile": "server.crt", "keyfile": "server.key", "client_ca": "garbage.pem"},
         "http.tls: cannot load client_ca 'PKI/garbage.pem'"),
        ("mqtt", {"ca": "nowhere/ca.crt"},
         "mqtt.tls: cannot load ca 'PKI/nowhere/ca.crt': No such file or directory"),
        ("mqtt", {"ca": "ca.crt", "certfile": "server.crt"},
         "mqtt.tls: certfile and keyfile go together"),
    ],
)  # fmt: skip
def test_bad_files_are_config_errors(
    tmp_path: Path, pki: Path, section: str, tls: dict[str, str], expected: str
) -> None:
    files = {k: str(pki / v) for k, v in tls.items()}
    with pytest.raises(ConfigError) as err:
        load_settings(config(tmp_path, **{section: {"tls": files}}), env={})
    first = str(err.value.problems[0])
    assert first.startswith(expected.replace("PKI", str(pki))), first


def test_cti_run_with_a_missing_certificate_exits_2_without_a_traceback(
    tmp_path: Path, pki: Path
) -> None:
    http_tls = {"certfile": str(tmp_path / "gone.crt"), "keyfile": str(pki / "server.key")}
    path = config(tmp_path, http={"tls": http_tls})
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    res = subprocess.run(
        [sys.executable, "-m", "cti", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("config error: http.tls: cannot load certfile/keyfile"), res.stderr
    assert "gone.crt" in res.stderr
    assert "Traceback" not in res.stderr


def test_seat_console_with_a_bad_broker_ca_exits_2(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, mqtt={"tls": {"ca": str(pki / "garbage.pem")}})
    assert cli.main(["seat-console", "1001", "-c", str(path)]) == 2
    assert capsys.readouterr().err.startswith("config error: mqtt.tls: cannot load ca")

"""TLS against the real testbed (issue 15): the daemon on Mosquitto's TLS listener gets a
call popped; its HTTP API over mutual TLS answers /healthz and a token's request, and a
plain-HTTP client, a client without a certificate and one trusting another CA are refused.

The test CA and certificates are the testbed's (scripts/testbed `tls_files`, made with
openssl in $CTI_TESTBED/tls): server.crt names localhost and 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.real.daemon_harness import Harness, spawn_daemon, stop_daemon_process, write_config
from tests.real.test_dispatch110_real import QUEUE, SEATS, TOKEN_SEATS
from tests.real.test_hostile_json_real import serves_a_call

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]

TLS = Path(os.environ.get("CTI_TESTBED", "/var/tmp/hotline-cti-testbed")) / "tls"
MQTT_TLS_PORT = int(os.environ.get("MQTT_TLS_PORT", "8883"))


def configure(tmp_path: Path, *, mqtt_tls: dict[str, Any], http_tls: bool) -> tuple[Path, str]:
    path, prefix = write_config(tmp_path, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["mqtt"].update(port=MQTT_TLS_PORT, tls=mqtt_tls)
    data["http"] = {
        "port": 0,
        "tokens": [{"name": "supervisor", "token": TOKEN_SEATS, "scopes": ["seats"]}],
    }
    if http_tls:
        data["http"]["tls"] = {
            "certfile": str(TLS / "server.crt"),
            "keyfile": str(TLS / "server.key"),
            "client_ca": str(TLS / "ca.crt"),
        }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


def client(base: str, *, ca: str = "ca.crt", cert: bool = True) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(TLS / ca))
    if cert:
        ctx.load_cert_chain(str(TLS / "client.crt"), str(TLS / "client.key"))
    return httpx.AsyncClient(base_url=base, verify=ctx, timeout=5)


async def test_daemon_over_mqtt_tls_pops_a_call_and_http_over_tls_refuses_strangers(
    tmp_path: Path,
) -> None:
    # the broker reached by IP, its certificate checked against the name given
    mqtt_tls = {"ca": str(TLS / "ca.crt"), "server_name": "localhost"}
    async with Harness(*configure(tmp_path, mqtt_tls=mqtt_tls, http_tls=True)) as h:
        up = h.log("mqtt_connected")
        assert up is not None
        assert up["tls"] is True, up
        assert up["broker"] == f"127.0.0.1:{MQTT_TLS_PORT}"
        # seat commands in and pops out through the TLS listener (the harness watches on
        # the plain one: the same broker)
        await h.seat("1001", {"cmd": "login", "ready": True})
        await serves_a_call(h, "13800000881")

        http = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
        assert http["tls"] is True
        assert http["client_certificates"] is True
        base = f"https://localhost:{http['port']}"
        async with client(base) as good:
            health = await good.get("/healthz")
            assert health.status_code == 200, health.text
            seats = await good.get(
                "/api/v1/seats", headers={"Authorization": f"Bearer {TOKEN_SEATS}"}
            )
            assert seats.status_code == 200, seats.text
            assert [s["seat"] for s in seats.json()["seats"]] == ["1001"]
            no_token = await good.get("/api/v1/seats")
            assert no_token.status_code == 401  # TLS does not replace the token

        # plain HTTP on the TLS port: no HTTP answer at all
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http['port']}") as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get("/healthz")
        # a client trusting another CA refuses the daemon's certificate
        async with client(base, ca="other-ca.crt") as stranger:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await stranger.get("/healthz")
        # a client without a certificate is refused by the daemon (mutual TLS)
        async with client(base, cert=False) as anonymous:
            with pytest.raises(httpx.TransportError):
                await anonymous.get("/healthz")
        # ... and the daemon still serves the good one and calls
        async with client(base) as good:
            assert (await good.get("/healthz")).status_code == 200
        assert h.proc is not None
        assert h.proc.returncode is None
        await serves_a_call(h, "13800000882")


async def test_a_broker_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    mqtt_tls = {"ca": str(TLS / "ca.crt"), "server_name": "broker.invalid"}
    path, _prefix = configure(tmp_path, mqtt_tls=mqtt_tls, http_tls=False)
    proc = await spawn_daemon(path)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(20):
            while line := await proc.stderr.readline():
                seen.append(line.decode(errors="replace"))
                if '"mqtt_disconnected"' in seen[-1]:
                    break
        assert "mqtt_disconnected" in seen[-1], seen[-10:]
        assert "certificate verify failed" in seen[-1].lower(), seen[-1]
        assert not any('"mqtt_connected"' in s for s in seen)
        assert proc.returncode is None  # it keeps trying, it does not exit
    finally:
        await stop_daemon_process(proc)

"""Secrets (issue 15): tokens are compared in constant time and never logged.

Statically over cti/: no secret is compared with ``==``/``!=`` (only the HTTP API compares
tokens, through SHA-256 digests and :func:`hmac.compare_digest`), and the places that take
a secret's value out of its ``SecretStr`` are a reviewed list. At run time: the MQTT
password, the work-order backend's token and an HTTP bearer token do not reach the log
when the broker refuses, when the backend fails (even echoing the request's headers), or
when a wrong token is presented.
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from pydantic import SecretStr

from cti.adapters.http.auth import TokenAuth
from cti.adapters.mqtt import MqttAdapter
from cti.adapters.workorders import HttpWorkOrders
from cti.logs import configure_logging
from cti.settings import HttpToken, LoggingSettings, MqttSettings, WorkOrdersSettings
from cti.workorders import WorkOrderError
from tests.workorders.test_http_backend import draft

CTI = Path(__file__).resolve().parent.parent / "cti"
_SECRET_WORDS = ("token", "secret", "password")

# Where a secret's value leaves its SecretStr, and why (a new one must be reviewed here).
REVIEWED_UNWRAPS = {
    "adapters/ami.py": 1,  # the AMI Login action (never logged: actions are not)
    "adapters/mqtt.py": 1,  # paho's password
    "adapters/http/auth.py": 1,  # its SHA-256 digest, compared with compare_digest
    "adapters/workorders/http.py": 1,  # the backend's Authorization header
    "adapters/dispatch110.py": 1,  # 110's webhook Authorization header
    "settings/http.py": 1,  # two tokens alike is a configuration error
    "settings/workorders.py": 1,  # the token's characters are checked
}


def _secretish(node: ast.AST) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    if isinstance(node, ast.Call):
        return _secretish(node.func)
    return isinstance(name, str) and (
        name == "get_secret_value" or any(w in name.lower() for w in _SECRET_WORDS)
    )


def _sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(CTI.rglob("*.py")):
        yield str(path.relative_to(CTI)), ast.parse(path.read_text(encoding="utf-8"))


def test_no_secret_is_compared_with_equality() -> None:
    found = [
        f"{name}:{node.lineno}"
        for name, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
        and any(_secretish(side) for side in [node.left, *node.comparators])
        # `x == None`-like checks and names that are not secrets are not comparisons of one
        and not any(isinstance(s, ast.Constant) and s.value is None for s in node.comparators)
    ]
    assert found == [], "compare secrets with hmac.compare_digest: " + ", ".join(found)


def test_tokens_are_compared_with_compare_digest() -> None:
    source = (CTI / "adapters" / "http" / "auth.py").read_text(encoding="utf-8")
    assert "hmac.compare_digest(digest, expected)" in source
    auth = TokenAuth([HttpToken(name="a", token=SecretStr("t" * 32), scopes=("seats",))])
    assert auth.authenticate("t" * 32) is not None
    assert auth.authenticate("t" * 31) is None


def test_secrets_leave_their_secretstr_only_where_reviewed() -> None:
    unwraps = {
        name: n
        for name, tree in _sources()
        if (
            n := sum(
                1
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and node.attr == "get_secret_value"
            )
        )
    }
    assert unwraps == REVIEWED_UNWRAPS


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(
        LoggingSettings(format="json", level="debug"), stream=out, cache_loggers=False
    )
    yield out
    structlog.reset_defaults()


async def test_the_mqtt_password_is_not_logged_when_the_broker_refuses(
    logged: io.StringIO,
) -> None:
    password = "mqtt-password-0123456789"
    settings = MqttSettings(host="127.0.0.1", port=1, username="cti", password=SecretStr(password))
    adapter = MqttAdapter(settings, reconnect_min=0.01, reconnect_max=0.02)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await adapter.run()
    text = logged.getvalue()
    assert "mqtt_disconnected" in text
    assert password not in text


async def test_the_workorder_token_is_not_logged_even_when_the_backend_echoes_it(
    logged: io.StringIO,
) -> None:
    token = "wo-token-0123456789abcdef"

    def echo(request: httpx.Request) -> httpx.Response:
        # a hostile or careless backend: its error page shows the request's headers
        return httpx.Response(400, text=json.dumps(dict(request.headers)))

    settings = WorkOrdersSettings.model_validate(
        {"backend": "http", "http": {"base_url": "http://wo.invalid/api", "token": token}}
    )
    assert settings.http is not None
    backend = HttpWorkOrders(settings.http, transport=httpx.MockTransport(echo))
    try:
        with pytest.raises(WorkOrderError) as err:
            await backend.create(draft(1), key="k1")
    finally:
        await backend.aclose()
    structlog.get_logger("t").error("ticket_failed", error=str(err.value))
    text = logged.getvalue()
    assert "ticket_failed" in text
    assert token not in text

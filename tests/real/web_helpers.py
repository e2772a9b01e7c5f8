"""The browser pages' side of the real tests: a daemon config with web users, a login over
HTTP, and Debian's chromium for Playwright (it cannot download browsers here)."""

from __future__ import annotations

import re
import secrets
import socket
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from cti.adapters.http.sessions import hash_password
from tests.real.daemon_harness import Harness, write_config

CHROMIUM: Final = "/usr/bin/chromium"
# root in a container: chromium's sandbox needs user namespaces it may not get
CHROMIUM_ARGS: Final = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
PASSWORD: Final = "test-only-password-1"
HASH: Final = hash_password(PASSWORD)
TOKEN_110: Final = "p-" + secrets.token_hex(16)  # the 110 system's, for its pushes
LINE110: Final = "12345110"  # the sample plan's 110 transfer line

# one seat per agent; every skill of the plan has a seat
SEATS: Final = [
    {
        "id": "1001",
        "endpoint": "Local/1001@seats",
        "skills": {"general": 5, "market": 3, "hr": 1, "env": 1, "health": 1, "dialect": 1},
    },
    {"id": "1002", "endpoint": "Local/1002@seats", "skills": {"general": 1}},
]
QUEUE: Final = {"ring_timeout_s": 8, "wrapup_s": 0, "overflow": [], "sticky_window_s": 0}


def free_port() -> int:
    """A port free now, for a daemon that must keep its address across a restart (the
    browser reconnects to the same URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_config(tmp: Path, *, lockout_after: int = 5, port: int = 0) -> tuple[Path, str]:
    """The harness config with agents a1001 (seat 1001), a1002 (seat 1002) and a supervisor,
    all with :data:`PASSWORD`."""
    path, prefix = write_config(tmp, seats=SEATS, queue=QUEUE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["http"]["port"] = port
    data["http"]["tokens"] = [
        {"name": "dispatch-110", "token": TOKEN_110, "scopes": ["transfers110"]}
    ]
    data["web"] = {
        "lockout_after": lockout_after,
        "lockout_s": 300,
        "users": [
            {"name": "a1001", "role": "agent", "seat": "1001", "password_hash": HASH,
             "display_name": "张三", "test_only": True},
            {"name": "a1002", "role": "agent", "seat": "1002", "password_hash": HASH,
             "test_only": True},
            {"name": "boss", "role": "supervisor", "lines": ["12345", "12315"],
             "password_hash": HASH, "test_only": True},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, prefix


async def base_url(h: Harness) -> str:
    up = await h.wait(lambda: h.log("http_listening"), 10, "the HTTP API listening")
    return f"http://{up['host']}:{up['port']}"


async def login(c: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    """Log in through the form (its CSRF cookie and field), like a browser."""
    form = await c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    return await c.post(
        "/login", data={"username": name, "password": password, "csrf": token.group(1)}
    )


async def page_csrf(c: httpx.AsyncClient) -> str:
    page = await c.get("/console")
    assert page.status_code == 200, page.status_code
    token = re.search(r'data-csrf="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)

"""Every `cti run` a test starts writes its log to a file too, for the log scan.

With ``CTI_TEST_LOG_DIR`` set (``scripts/dev test`` sets it), each daemon process started
through :func:`asyncio.create_subprocess_exec` as ``python -m cti run -c FILE`` — by the
harness or by a test of its own — has its stderr copied by ``tee`` into
``$CTI_TEST_LOG_DIR/<test>-<n>.log``, still reaching the test's pipe unchanged; the secrets
it was configured with (``secret``/``password``/``token`` values of FILE, ``CTI_…``
secrets of its environment) go to ``<test>-<n>.secrets``. :mod:`tests.logscan` then scans
the whole run's logs for unmasked phone numbers and for those secrets. Without the
variable nothing is wrapped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = ["LOG_DIR_ENV", "capture_daemon_logs", "configured_secrets", "note_secrets"]

LOG_DIR_ENV = "CTI_TEST_LOG_DIR"
_SECRET_KEYS = re.compile(r"(secret|password|token)$", re.IGNORECASE)
_SECRET_ENV = re.compile(r"^CTI_.*(SECRET|PASSWORD|TOKEN)", re.IGNORECASE)
_counter = itertools.count(1)


def configured_secrets(config: Path | None, env: Mapping[str, str]) -> set[str]:
    """The secrets a daemon started with *config* and *env* knows."""
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and _SECRET_KEYS.search(key):
            found.add(node)

    if config is not None and config.is_file():
        try:
            walk(yaml.safe_load(config.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            pass  # a test's deliberately broken file: it never serves
    found.update(v for k, v in env.items() if _SECRET_ENV.search(k))
    return found


def note_secrets(*values: str, config: Path | None = None) -> None:
    """Secrets a running daemon learns after its start — a reloaded file's new tokens
    (*config*: the file as it is now), a password a test pastes into it — for the scan:
    the ``.secrets`` snapshot taken at the start does not hold them (issue 15's audit)."""
    directory = os.environ.get(LOG_DIR_ENV)
    if not directory:
        return
    found = set(values) | (configured_secrets(config, {}) if config is not None else set())
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"noted-{next(_counter)}.secrets").write_text(
        json.dumps(sorted(found)), encoding="utf-8"
    )


def _is_daemon(args: tuple[Any, ...]) -> bool:
    words = [str(a) for a in args]
    return any(words[i : i + 3] == ["-m", "cti", "run"] for i in range(len(words)))


def _config_of(args: tuple[Any, ...]) -> Path | None:
    words = [str(a) for a in args]
    for i, word in enumerate(words[:-1]):
        if word in ("-c", "--config"):
            return Path(words[i + 1])
    return None


@pytest.fixture(autouse=True)
def capture_daemon_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    directory = os.environ.get(LOG_DIR_ENV)
    if not directory:
        yield
        return
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    original = asyncio.create_subprocess_exec
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]

    async def wrapped(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if not _is_daemon(args):
            return await original(*args, **kwargs)
        base = out / f"{test}-{next(_counter)}"
        env = kwargs.get("env") or os.environ
        secrets = sorted(configured_secrets(_config_of(args), env))
        base.with_suffix(".secrets").write_text(json.dumps(secrets), encoding="utf-8")
        log = shlex.quote(str(base.with_suffix(".log")))
        # exec: the test's process is the daemon itself (its pid, signals, exit code);
        # tee, started before, copies its stderr to the file and on to the test's pipe
        script = f'exec "$@" 2> >(exec tee -a {log} >&2)'
        return await original("bash", "-c", script, "cti-daemon", *map(str, args), **kwargs)

    asyncio.create_subprocess_exec = wrapped
    try:
        yield
    finally:
        asyncio.create_subprocess_exec = original

"""Shared fixtures. Tests marked `realserver` need the testbed (scripts/testbed up).

They never skip: a run without the real Asterisk/Mosquitto fails loudly, because a green
run that skipped them proves little.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from cti.adapters.db.store import Store
from cti.settings import AmiNode
from tests.dbs import DATABASES, create_pg_database, drop_pg_database
from tests.real.logcapture import capture_daemon_logs  # noqa: F401  # autouse: the log scan

PROJECT = Path(__file__).resolve().parent.parent
TESTBED = PROJECT / "scripts" / "testbed"

# the testbed's fixed, loopback-only endpoints (asterisk-sample/manager.conf, scripts/testbed)
AMI_HOST = "127.0.0.1"
AMI_PORT = 5038
AMI_USER = "cti"
AMI_SECRET = "ctisecret"
MQTT_HOST = "127.0.0.1"
MQTT_PORT = int(os.environ.get("MQTT_PORT", "1883"))


# The testbed's broker wants a login (mosquitto-sample/): tests observe as `cti-test`,
# which may read and write anything; seats log in as their seat id.
class MqttLogin(TypedDict):
    username: str
    password: str


MQTT_LOGIN: MqttLogin = {"username": "cti-test", "password": "testsecret"}
SEAT_PASSWORD = "seatsecret"
# ... and daemons as `hotline-cti` (config/cti.yaml has it too)
DAEMON_MQTT_LOGIN: MqttLogin = {"username": "hotline-cti", "password": "ctisecret"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        action="append",
        choices=DATABASES,
        help="run the store tests (the db_url fixture) on this database; repeat for several "
        "(default: $CTI_TEST_DB, comma-separated, else sqlite; scripts/dev test gives both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames:
        dbs = metafunc.config.getoption("db") or [
            d.strip() for d in os.environ.get("CTI_TEST_DB", "sqlite").split(",") if d.strip()
        ]
        metafunc.parametrize("db_url", dbs, indirect=True)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new empty database: a SQLite file, or a database of the testbed's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/cti.db"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A Store opened on `db_url` (its schema created), closed after the test. A module
    that wants its store elsewhere defines its own `store` (tests/adapters/test_store.py)."""
    s = Store(db_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture(scope="session")
def testbed() -> None:
    """Fail (not skip) when the real servers are not up."""
    res = subprocess.run([str(TESTBED), "status"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.fail(
            "the real testbed is not running (run `scripts/testbed up`, or `scripts/dev test` "
            f"which does it):\n{res.stdout}{res.stderr}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _clean_asterisk(request: pytest.FixtureRequest) -> None:
    """Every real-server test starts with no channel up: a test that failed half-way must
    not leave calls that the next test's daemon would adopt."""
    if request.node.get_closest_marker("realserver") is None:
        return
    if subprocess.run([str(TESTBED), "status"], capture_output=True, check=False).returncode:
        return  # the `testbed` fixture reports it
    bed_cli("channel request hangup all")
    for _ in range(50):
        if "0 active channels" in bed_cli("core show channels count"):
            return
        time.sleep(0.1)


def bed_node(**kw: object) -> AmiNode:
    base: dict[str, object] = {
        "name": "main",
        "host": AMI_HOST,
        "port": AMI_PORT,
        "username": AMI_USER,
        "secret": AMI_SECRET,
        "connect_timeout": 5.0,
        "action_timeout": 5.0,
        "ping_interval": 2.0,
        "ping_timeout": 1.0,
        "reconnect_min": 0.2,
        "reconnect_max": 1.0,
    }
    base.update(kw)
    return AmiNode.model_validate(base)


def unique(prefix: str = "t") -> str:
    """A unique id for channel ids / MQTT topics of one test."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def bed_cli(command: str) -> str:
    res = subprocess.run(
        [str(TESTBED), "cli", command], capture_output=True, text=True, check=True, timeout=30
    )
    return res.stdout

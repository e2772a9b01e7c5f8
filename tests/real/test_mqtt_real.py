"""The testbed's Mosquitto: the broker the daemon publishes pops and state to."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from tests.conftest import MQTT_HOST, MQTT_LOGIN, MQTT_PORT, unique

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("testbed")]


async def test_qos1_retained_roundtrip_with_chinese_payload() -> None:
    topic = f"test/{unique()}/state"
    payload = json.dumps({"seat": "1001", "state": "示闲"}, ensure_ascii=False)
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=unique("pub"), **MQTT_LOGIN) as pub:
        await pub.publish(topic, payload, qos=1, retain=True)
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=unique("sub"), **MQTT_LOGIN) as sub:
        await sub.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            msg = await anext(aiter(sub.messages))
        assert msg.retain
        assert isinstance(msg.payload, bytes)
        assert json.loads(msg.payload) == {"seat": "1001", "state": "示闲"}
        await sub.publish(topic, b"", qos=1, retain=True)  # clear the retained message

"""MQTT devices through a real mosquitto and a real Kafka broker (edge/mqtt).

One mosquitto on a free port per module, its config, passwords and ACL generated under tmp; the
device registry is a fresh embedded ClickHouse with rows inserted into ``devices``; the bridge runs as
its own ``riskwatch mqtt bridge`` process (so it can be killed with -9).
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from riskwatch.settings import Settings
from riskwatch.tools.mqtt import BridgeService, Mosquitto
from tests.conftest import free_port

DEVICES = [
    # device_id, entity_id, channels, unit, owner
    ("dev-a", "E-mqtt-a", ["boiler_pressure"], "MPa", "vendor-x"),
    ("dev-b", "E-mqtt-b", ["cold_chain_temp", "storage_humidity"], "", ""),
]
ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"dev-a": "pw-a-secret", "dev-b": "pw-b-secret", "dev-ghost": "pw-ghost"}


def _insert_devices(url: str, database: str) -> None:
    from sinks.clickhouse import make_client
    from sinks.migrations import migrate

    c = make_client(url)
    try:
        migrate(c, database)
        rows = [
            [d, e, 1, "registered", ch, unit, None, None, None, None, None, "", 60, None, None, owner, "test"]
            for d, e, ch, unit, owner in DEVICES
        ]
        cols = [
            "device_id", "entity_id", "version", "action", "channels", "unit", "rated_pressure_mpa",
            "rated_temp_c", "rated_load_kg", "set_point_min_c", "set_point_max_c", "medium", "interval_s",
            "installed_on", "calibrated_on", "owner", "source",
        ]  # fmt: skip
        c.insert(f"{database}.devices", rows, column_names=cols)
        # a removed device is not in the registry
        c.insert(
            f"{database}.devices",
            [["dev-gone", "E-x", 2, "removed", ["boiler_temp"], "", None, None, None, None, None, "", 60, None,
              None, "", "test"]],
            column_names=cols,
        )  # fmt: skip
    finally:
        c.close()


class Stack:
    def __init__(self, s: Settings):
        self.s = s
        self.broker = Mosquitto(s)
        self.bridge = BridgeService(s)
        self.seen: dict[str, list[dict]] = {"events.sensor": [], "deadletter": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        from kafka import KafkaConsumer

        c = KafkaConsumer(
            self.s.topic("events.sensor"), self.s.topic("deadletter"),
            **self.s.kafka_kwargs(), auto_offset_reset="earliest", enable_auto_commit=False,
            group_id=None, consumer_timeout_ms=200,
        )  # fmt: skip
        while not self._stop.is_set():
            for rec in c:
                short = rec.topic.removeprefix(self.s.topic_prefix)
                self.seen[short].append(orjson.loads(rec.value))
        c.close()

    def sensor_ids(self) -> list[str]:
        return [r["event_id"] for b in self.seen["events.sensor"] for r in b["readings"]]

    def wait(self, cond: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out; seen {len(self.sensor_ids())} readings, {len(self.seen['deadletter'])} dl")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def stack(broker: Settings, tmp_path_factory: pytest.TempPathFactory):
    from kafka.admin import KafkaAdminClient, NewTopic

    tmp: Path = tmp_path_factory.mktemp("mqtt")
    run = uuid.uuid4().hex[:8]
    s = broker.model_copy(
        update=dict(
            topic_prefix=f"t{run}.",
            mqtt_data_dir=tmp / "mqtt",
            mqtt_port=free_port(),
            mqtt_bridge_port=free_port(),
            web_port=free_port(),
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            mqtt_client_id=f"bridge-{run}",
            mqtt_batch_seconds=0.1,
        )
    )
    admin = KafkaAdminClient(**s.kafka_kwargs())
    admin.create_topics([NewTopic(s.topic(t), 2, 1) for t in ("events.sensor", "deadletter")])
    # in a child: chDB holds its directory for the life of the process that opened it
    code = (
        f"from tests.test_mqtt import _insert_devices; _insert_devices({s.clickhouse_url!r}, {s.clickhouse_database!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    st = Stack(s)
    st.broker.write_acl([d[0] for d in DEVICES] + ["dev-ghost"])  # the ghost: a login the registry lost
    for login, pw in PASSWORDS.items():
        st.broker.set_password(login, pw)
    st.broker.start()
    st.bridge.start()
    yield st
    st.bridge.stop()
    st.broker.stop()
    st.close()
    admin.delete_topics([s.topic(t) for t in ("events.sensor", "deadletter")])
    admin.close()


def _client(s: Settings, login: str, password: str) -> tuple[mqtt.Client, list]:
    result: list = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{login}-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)  # fmt: skip
    c.username_pw_set(login, password)
    c.on_connect = lambda *a: result.append(a[3])
    c.connect("127.0.0.1", s.mqtt_port)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        time.sleep(0.02)
    return c, result


def _device(s: Settings, login: str) -> mqtt.Client:
    c, res = _client(s, login, PASSWORDS[login])
    assert res and not res[0].is_failure, res
    return c


def _publish(c: mqtt.Client, topic: str, body: dict | list | bytes) -> mqtt.MQTTMessageInfo:
    info = c.publish(topic, body if isinstance(body, bytes) else orjson.dumps(body), qos=1)
    info.wait_for_publish(10)
    return info


def test_reading_arrives_as_sensor_batch(stack: Stack):
    c = _device(stack.s, "dev-a")
    # the body's device, entity and source are ignored: the topic names the device
    _publish(c, "devices/dev-a/telemetry", {"event_id": "a-1", "value": 0.82, "device_id": "dev-b", "source": "x"})
    stack.wait(lambda: "a-1" in stack.sensor_ids())
    batch = next(b for b in stack.seen["events.sensor"] if any(r["event_id"] == "a-1" for r in b["readings"]))
    assert batch["kind"] == "sensor_batch" and batch["entity_id"] == "E-mqtt-a"
    (r,) = [r for r in batch["readings"] if r["event_id"] == "a-1"]
    assert (r["device_id"], r["channel"], r["unit"], r["source"]) == ("dev-a", "boiler_pressure", "MPa", "vendor-x")
    # a gateway batch of readings from one device, the second one in the owner-less device's source
    d = _device(stack.s, "dev-b")
    _publish(d, "devices/dev-b/telemetry", [
        {"event_id": "b-1", "channel": "cold_chain_temp", "value": -18.0, "unit": "℃"},
        {"event_id": "b-2", "channel": "storage_humidity", "value": 55, "unit": "%RH"},
    ])  # fmt: skip
    stack.wait(lambda: {"b-1", "b-2"} <= set(stack.sensor_ids()))
    b = next(b for b in stack.seen["events.sensor"] if b["entity_id"] == "E-mqtt-b")
    assert {r["source"] for r in b["readings"]} == {"mqtt:dev-b"}
    c.disconnect(), d.disconnect()


def test_foreign_topic_refused_by_mosquitto(stack: Stack):
    c = _device(stack.s, "dev-a")
    codes: dict[int, int] = {}
    c.on_publish = lambda _c, _u, mid, reason, _p: codes.__setitem__(mid, int(reason.value))
    info = _publish(c, "devices/dev-b/telemetry", {"event_id": "forged-1", "channel": "cold_chain_temp", "value": 30})
    assert codes[info.mid] == 135  # MQTT 5 PUBACK: not authorized
    _publish(c, "devices/dev-a/telemetry", {"event_id": "after-forged", "value": 0.5})
    stack.wait(lambda: "after-forged" in stack.sensor_ids())
    assert "forged-1" not in stack.sensor_ids()
    assert not any(b"forged-1" in base64.b64decode(d["payload_b64"]) for d in stack.seen["deadletter"])
    c.disconnect()


def test_wrong_password_and_unknown_login_refused(stack: Stack):
    for login, pw in (("dev-a", "wrong"), ("nobody", "x"), ("dev-gone", "x")):
        c, res = _client(stack.s, login, pw)
        assert res and res[0].is_failure, (login, res)
        c.loop_stop()


def test_unknown_device_bad_json_bad_channel_dead_letters(stack: Stack):
    g = _device(stack.s, "dev-ghost")
    _publish(g, "devices/dev-ghost/telemetry", {"event_id": "g-1", "value": 1})
    a = _device(stack.s, "dev-a")
    _publish(a, "devices/dev-a/telemetry", b"{not json")
    _publish(a, "devices/dev-a/telemetry", {"event_id": "a-temp", "channel": "boiler_temp", "value": 80})
    stack.wait(lambda: len(stack.seen["deadletter"]) >= 3)
    by_src: dict[str, list[dict]] = {}
    for d in stack.seen["deadletter"]:
        by_src.setdefault(d["source"], []).append(d)
    (ghost,) = by_src["mqtt:dev-ghost"]
    assert "unknown device" in ghost["error"] and b"g-1" in base64.b64decode(ghost["payload_b64"])
    errors = sorted(d["error"] for d in by_src["mqtt:dev-a"])
    assert any(e.startswith("malformed JSON") for e in errors)
    assert any("no channel 'boiler_temp'" in e for e in errors)
    assert "g-1" not in stack.sensor_ids() and "a-temp" not in stack.sensor_ids()
    g.disconnect(), a.disconnect()


def test_kill9_bridge_mid_stream_loses_nothing(stack: Stack):
    c = _device(stack.s, "dev-a")
    n = 3000
    ids = [f"k9-{i}" for i in range(n)]

    def publish() -> None:
        for i, eid in enumerate(ids):
            c.publish("devices/dev-a/telemetry", orjson.dumps({"event_id": eid, "value": 0.5 + i * 1e-4}), qos=1)
            if i % 200 == 0:
                time.sleep(0.05)

    t = threading.Thread(target=publish)
    t.start()
    stack.wait(lambda: sum(e.startswith("k9-") for e in stack.sensor_ids()) >= 300)
    print(stack.bridge.stop(kill=True))
    got_at_kill = sum(e.startswith("k9-") for e in stack.sensor_ids())
    t.join(60)
    time.sleep(0.5)
    stack.bridge.start()
    stack.wait(lambda: set(ids) <= set(stack.sensor_ids()), timeout=40)
    assert got_at_kill < n  # the kill happened mid-stream
    c.disconnect()


def test_doctests():
    """edge/ and riskwatch/tools are outside pytest's doctest paths: the examples of the MQTT modules run here."""
    import doctest

    import edge.mqtt.bridge
    import edge.mqtt.broker
    import edge.mqtt.convert
    import edge.mqtt.registry
    import riskwatch.tools.mqtt

    for mod in (edge.mqtt.bridge, edge.mqtt.broker, edge.mqtt.convert, edge.mqtt.registry, riskwatch.tools.mqtt):
        assert doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0, mod.__name__

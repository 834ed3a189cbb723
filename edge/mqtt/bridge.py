"""The MQTT → Kafka bridge: device telemetry from mosquitto to ``events.sensor``, at least once.

Why this shape: a device's reading must survive the bridge being killed at any instant. The bridge
holds a persistent session on the broker (fixed client id, MQTT v5 with ``clean_start=False`` and a
session expiry) and subscribes with QoS 1 and ``manual_ack``: mosquitto keeps every message until the
bridge sends its PUBACK, and the bridge sends it only after Kafka acknowledged the write (``acks=all``,
idempotent producer). A kill -9 between the two redelivers the message; its ``event_id`` (given by
the device, or derived from its bytes) is the same, and the worker drops the copy.

Readings are gathered per entity for ``mqtt_batch_seconds`` (≤ 1 s) into ``sensor_batch`` messages
keyed by ``entity_id`` (≤ 500 readings each), so the worker sees batches, not single readings. A
message from an unknown device, malformed JSON or a channel the device lacks goes to ``deadletter``
(``schemas.events.DeadLetter`` with the original bytes, the reason and ``source`` = the device's
login) and is acknowledged: it is answered, not lost. The device map is re-read from the registry
every ``mqtt_registry_refresh_seconds``.

Run: ``riskwatch mqtt bridge`` (foreground) or ``riskwatch mqtt bridge start|stop|status``
(riskwatch.tools.mqtt runs it as a background process).

>>> batches = list(entity_batches({"E1": [{"event_id": str(i)} for i in range(501)]}, "mqtt:b"))
>>> [(k, len(orjson.loads(v)["readings"])) for k, v in batches]
[(b'E1', 500), (b'E1', 1)]
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from edge.mqtt.broker import TELEMETRY_FILTER, bridge_password
from edge.mqtt.convert import convert
from edge.mqtt.registry import Device, RegistryUnavailable, WorkerQuery, load_devices
from riskwatch.settings import Settings
from schemas.events import MAX_BATCH_READINGS, DeadLetter
from streams.runtime import topics as T

log = logging.getLogger("riskwatch.mqtt.bridge")
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps the bridge's queue for a week of absence


@dataclass(slots=True)
class Incoming:
    gen: int  # connection generation: a message id is only valid on the connection that delivered it
    mid: int
    topic: str
    payload: bytes


@dataclass(slots=True)
class Counters:
    messages: int = 0
    readings: int = 0
    batches: int = 0
    dead_letters: int = 0
    acked: int = 0
    kafka_retries: int = 0
    cpu_seconds: float = 0.0
    devices: int = 0
    last: dict[str, float] = field(default_factory=dict)

    def prometheus(self) -> str:
        cpu = time.process_time()
        rows = [
            ("riskwatch_mqtt_messages_total", self.messages),
            ("riskwatch_mqtt_readings_total", self.readings),
            ("riskwatch_mqtt_batches_total", self.batches),
            ("riskwatch_mqtt_dead_letters_total", self.dead_letters),
            ("riskwatch_mqtt_acked_total", self.acked),
            ("riskwatch_mqtt_kafka_retries_total", self.kafka_retries),
            ("riskwatch_mqtt_devices", self.devices),
            ("riskwatch_mqtt_process_cpu_seconds_total", cpu),
        ]
        return "".join(f"{k} {v}\n" for k, v in rows)


def device_of(topic: str) -> str | None:
    """``devices/<id>/telemetry`` → ``<id>``."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "devices" and parts[2] == "telemetry" and parts[1]:
        return parts[1]
    return None


def entity_batches(groups: dict[str, list[dict[str, Any]]], gateway_id: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of ``sensor_batch`` messages: per entity, ≤ 500 readings each."""
    for entity_id, readings in groups.items():
        for i in range(0, len(readings), MAX_BATCH_READINGS):
            body = {
                "schema_version": 1,
                "kind": "sensor_batch",
                "entity_id": entity_id,
                "gateway_id": gateway_id,
                "readings": readings[i : i + MAX_BATCH_READINGS],
            }
            yield entity_id.encode(), orjson.dumps(body)


def dead_letter(topic: str, device_id: str, raw: bytes, refused: list[tuple[int | None, str]]) -> bytes:
    idx = [(i, why) for i, why in refused if i is not None]
    error = f"{len(idx)} readings refused\n" + "\n".join(why for _, why in idx) if idx else refused[0][1]
    return (
        DeadLetter(
            topic=topic,
            partition=-1,
            offset=int.from_bytes(hashlib.sha256(topic.encode() + raw).digest()[:7], "big"),  # one row per message
            key=device_id,
            payload_b64=base64.b64encode(raw).decode(),
            error=error,
            indexes=[i for i, _ in idx],
            reasons=[why for _, why in idx],
            received_at=datetime.now(UTC),
            source=f"mqtt:{device_id}",
        )
        .model_dump_json()
        .encode()
    )


class Bridge:
    """One bridge process: MQTT session → batches → Kafka → PUBACKs."""

    def __init__(self, settings: Settings, via_worker: WorkerQuery | None = None):
        self.s = settings
        self.via_worker = via_worker
        self.q: queue.Queue[Incoming] = queue.Queue()
        self.gen = 0
        self.devices: dict[str, Device] = {}
        self.loaded_at = 0.0
        self.counters = Counters()
        self.connected = threading.Event()
        self.gateway_id = f"mqtt:{settings.mqtt_client_id}"
        self._client: Any = None
        self._producer: Any = None

    # --- registry ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        try:
            self.devices = load_devices(self.s, self.via_worker)
        except RegistryUnavailable as e:
            log.warning("%s; keeping %d known devices", e, len(self.devices))
            return False
        self.loaded_at = time.monotonic()
        self.counters.devices = len(self.devices)
        return True

    def _refresher(self, stop: threading.Event) -> None:
        while not stop.wait(self.s.mqtt_registry_refresh_seconds):
            self.refresh()

    # --- MQTT ---------------------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        self.gen += 1
        sub = f"$share/{self.s.mqtt_shared_group}/{TELEMETRY_FILTER}" if self.s.mqtt_shared_group else TELEMETRY_FILTER
        client.subscribe(sub, qos=1)
        log.info(
            "connected to mqtt://%s:%d (session present: %s); subscribed to %s",
            self.s.mqtt_host,
            self.s.mqtt_port,
            getattr(flags, "session_present", "?"),
            sub,
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self.connected.set()  # /metrics answers 200 from now on: `start` returns once messages flow
        else:
            log.error(
                "subscription refused: %s (check the ACL: the bridge user must read devices/+/telemetry)", reasons
            )

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected: %s (reconnecting)", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.q.put(Incoming(self.gen, msg.mid, msg.topic, bytes(msg.payload)))

    def _mqtt(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.s.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        c.username_pw_set(self.s.mqtt_bridge_user, bridge_password(self.s))
        c.on_connect, c.on_disconnect, c.on_message = self._on_connect, self._on_disconnect, self._on_message
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = 65535
        c.connect_async(self.s.mqtt_host, self.s.mqtt_port, keepalive=30, clean_start=False, properties=props)
        return c

    # --- Kafka --------------------------------------------------------------------------------
    def _kafka(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(
            **self.s.kafka_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            client_id="riskwatch-mqtt-bridge",
            max_request_size=4 * 1024 * 1024,
        )

    def _produce(self, records: list[tuple[str, bytes, bytes]], stop: threading.Event) -> bool:
        """Write every record and wait for Kafka's acknowledgement; retry until it is written (True)
        or the bridge is stopping (False: nothing is acked, the broker redelivers)."""
        from kafka.errors import KafkaError

        while True:
            try:
                futures = [self._producer.send(t, key=k, value=v) for t, k, v in records]
                self._producer.flush(timeout=60)
                for f in futures:
                    f.get(timeout=60)
                return True
            except (KafkaError, TimeoutError) as e:
                self.counters.kafka_retries += 1
                log.warning("Kafka write failed (%s: %s); retrying the same records", type(e).__name__, e)
                if stop.wait(1.0):
                    return False

    # --- one window ---------------------------------------------------------------------------
    def _gather(self, stop: threading.Event) -> list[Incoming]:
        try:
            first = self.q.get(timeout=0.5)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.s.mqtt_batch_seconds
        while len(items) < 20_000:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(self.q.get(timeout=left))
            except queue.Empty:
                break
        return items

    def process(self, items: list[Incoming], stop: threading.Event) -> bool:
        now = datetime.now(UTC).isoformat()
        groups: dict[str, list[dict[str, Any]]] = {}
        records: list[tuple[str, bytes, bytes]] = []
        dead_topic, sensor_topic = self.s.topic(T.DEADLETTER), self.s.topic("events.sensor")
        readings = 0
        for m in items:
            device_id = device_of(m.topic) or ""
            dev = self.devices.get(device_id)
            if dev is None and device_id and time.monotonic() - self.loaded_at > 5.0:
                self.refresh()  # a device registered since the last refresh
                dev = self.devices.get(device_id)
            conv = convert(dev, device_id, m.payload, now)
            if conv.readings:
                groups.setdefault(conv.entity_id, []).extend(conv.readings)
                readings += len(conv.readings)
            if conv.refused:
                records.append(
                    (dead_topic, device_id.encode(), dead_letter(m.topic, device_id, m.payload, conv.refused))
                )
        batches = [(sensor_topic, k, v) for k, v in entity_batches(groups, self.gateway_id)]
        if not self._produce(batches + records, stop):
            return False
        for m in items:
            if m.gen == self.gen:  # an older connection's ids mean nothing now: the broker redelivers those
                self._client.ack(m.mid, 1)
                self.counters.acked += 1
        c = self.counters
        c.messages += len(items)
        c.readings += readings
        c.batches += len(batches)
        c.dead_letters += len(records)
        return True

    def run(self, stop: threading.Event) -> None:
        while not self.refresh():
            log.warning("waiting for the device registry before subscribing")
            if stop.wait(5.0):
                return
        log.info("device registry: %d devices", len(self.devices))
        self._producer = self._kafka()
        self._client = self._mqtt()
        self._client.loop_start()
        threading.Thread(target=self._refresher, args=(stop,), daemon=True, name="registry").start()
        try:
            while not stop.is_set():
                items = self._gather(stop)
                if items and not self.process(items, stop):
                    break
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self._producer.close(timeout=10)


def serve_metrics(bridge: Bridge, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != "/metrics":
                self.send_error(404)
                return
            if not bridge.connected.is_set():
                self.send_error(503, "not subscribed to the broker (yet)")
                return
            body = bridge.counters.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server


def serve(settings: Settings, via_worker: WorkerQuery | None = None) -> None:
    """Run the bridge in the foreground until SIGTERM/SIGINT."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bridge = Bridge(settings, via_worker)
    server = serve_metrics(bridge, "127.0.0.1", settings.mqtt_bridge_port)
    try:
        bridge.run(stop)
    finally:
        server.shutdown()

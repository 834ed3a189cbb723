"""`riskwatch mqtt bench`: devices over MQTT through mosquitto, the bridge and a worker, measured.

Everything runs in its own directory (``var/bench/mqtt-run``) with its own ports: its own Kafka broker
(so the bench may restart it; the shared broker is never touched), mosquitto, the bridge and one worker.
Devices are registered by rows in ``devices`` (inserted before the worker opens the embedded ClickHouse),
each with its MQTT password and ACL entry. Three phases:

1. **throughput**: ``--burst`` messages from all devices as fast as they publish; MQTT messages/s
   through the bridge (first publish → the bridge's last PUBACK, i.e. Kafka acknowledged all) and the
   bridge's CPU per message (``/proc/<pid>/stat``); then the worker behind it: readings stored per
   second end to end (first publish → the last reading in ClickHouse) and its CPU per reading.
2. **latency**: ``--rate`` messages/s for ``--seconds``; every 0.5 s a probe device publishes a
   breaching boiler pressure (1.6 MPa > 1.25): ms from publish to its red alert on ``alerts.taskforce``.
3. **faults**: ``--rate`` messages/s for ``--seconds`` with a kill -9 of the bridge, a mosquitto restart
   and a Kafka restart (the bench's own broker); then counts in (messages mosquitto acknowledged to
   the devices) against readings stored (distinct ``event_id`` in ClickHouse ``events_sensor``).

Run: ``riskwatch mqtt bench --devices 50 --rate 500 --seconds 20``
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson

from riskwatch.settings import Settings
from riskwatch.tools.bench.pipeline import _cpu_seconds, _free_port, _percentile
from riskwatch.tools.mqtt import BridgeService, Mosquitto
from riskwatch.tools.runner import WorkerProcess, wait_for

PROBES = 40
BREACH_MPA = 1.6


def _register(s: Settings, devices: list[tuple[str, str]]) -> None:
    """Rows in ``devices`` (in a child: chDB keeps its directory for the life of the opening process)."""
    code = (
        "import sys, orjson\n"
        "from sinks.clickhouse import make_client\n"
        "from sinks.migrations import migrate\n"
        "url, db, devs = sys.argv[1], sys.argv[2], orjson.loads(sys.argv[3])\n"
        "c = make_client(url); migrate(c, db)\n"
        "rows = [[d, e, 1, 'registered', ['boiler_pressure'], 'MPa', 60, 'bench-vendor', 'bench'] for d, e in devs]\n"
        "c.insert(db + '.devices', rows, column_names=['device_id', 'entity_id', 'version', 'action', 'channels',"
        " 'unit', 'interval_s', 'owner', 'source'])\n"
        "c.close()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, s.clickhouse_url, s.clickhouse_database, orjson.dumps(devices).decode()],
        check=True,
        timeout=300,
    )


def _connect(s: Settings, login: str, password: str):
    import paho.mqtt.client as mqtt

    ok = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{login}-pub", protocol=mqtt.MQTTv5)
    c.username_pw_set(login, password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.on_connect = lambda *a: ok.set() if not a[3].is_failure else None
    c.reconnect_delay_set(min_delay=1, max_delay=2)
    c.connect("127.0.0.1", s.mqtt_port, keepalive=30)
    c.loop_start()
    if not ok.wait(20):
        raise RuntimeError(f"device {login} could not connect to mosquitto")
    return c


class Alerts:
    """First alert time (Kafka timestamp, ms) per entity on alerts.taskforce, read in the background."""

    def __init__(self, s: Settings):
        self.s = s
        self.first: dict[str, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        from kafka import KafkaConsumer

        c = KafkaConsumer(
            self.s.topic("alerts.taskforce"),
            **self.s.kafka_kwargs(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=300,
        )
        while not self._stop.is_set():
            try:
                for rec in c:
                    key = (rec.key or b"").decode()
                    self.first.setdefault(key, rec.timestamp / 1000.0)
            except Exception:  # noqa: BLE001 - the bench's own broker restarts under it
                time.sleep(1)
        c.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)


def _publish_paced(clients: list, rate: float, seconds: float, tag: str, infos: list, on_tick=None) -> int:
    n, t0 = 0, time.monotonic()
    while True:
        el = time.monotonic() - t0
        if el >= seconds:
            return n
        due = int(el * rate)
        while n < due:
            c = clients[n % len(clients)]
            body = orjson.dumps({"event_id": f"{tag}-{n}", "value": 0.6 + (n % 50) * 0.01})
            infos.append(c.publish(f"devices/{c._username.decode()}/telemetry", body, qos=1))
            n += 1
        if on_tick:
            on_tick(el)
        time.sleep(0.005)


def _puback(info) -> bool:
    """Whether mosquitto acknowledged the message. ``is_published()`` raises for a message published
    while disconnected, although paho keeps it and resends it on reconnect: read the flag it sets."""
    return bool(info._published)


def _stored(w: WorkerProcess, like: str) -> int:
    db = w.settings.clickhouse_database
    rows = w.query(f"SELECT uniqExact(event_id) AS n FROM {db}.events_sensor WHERE event_id LIKE '{like}%'")
    return int(rows[0]["n"]) if rows else -1


def _wait_stored(worker: WorkerProcess, acked: int, log, timeout: float = 300.0, stall: float = 60.0) -> int:
    """Wait until every acknowledged message is stored; a worker that makes no progress for ``stall``
    seconds (seen after a Kafka restart: its consumer group never recovers) is restarted, as a
    supervisor with a health check would. Returns how many times that was needed."""
    restarts, last, since = 0, -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _stored(worker, "ft-")
        if n >= acked:
            break
        if n > last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > stall and restarts < 2:
            log(f"worker stored nothing new for {stall:.0f} s ({n} of {acked}): restarting it")
            worker.stop()
            worker.start()
            restarts += 1
            since = time.monotonic()
        time.sleep(1.0)
    return restarts


def _metric(svc: BridgeService, name: str) -> float:
    import urllib.request

    try:
        with urllib.request.urlopen(svc.url + "/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return -1.0


def run(
    base: Settings, *, devices: int, rate: float, seconds: float, faults: bool, out: Path, burst: int = 20_000
) -> dict:
    from riskwatch.domain.catalog import load_catalog
    from riskwatch.tools.broker import Broker
    from streams.runtime.topics import ensure_topics

    tmp = Path("var/bench/mqtt-run").resolve()
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run_id = uuid.uuid4().hex[:6]
    kport = _free_port()
    s = base.model_copy(
        update=dict(
            kafka_data_dir=tmp / "kafka",
            kafka_port=kport,
            kafka_controller_port=_free_port(),
            kafka_bootstrap=f"127.0.0.1:{kport}",
            topic_prefix="",
            app_id=f"riskwatch-mqttbench-{run_id}",
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            state_store="memory",
            partitions=2,
            web_port=_free_port(),
            mqtt_data_dir=tmp / "mqtt",
            mqtt_port=_free_port(),
            mqtt_bridge_port=_free_port(),
            mqtt_client_id=f"bench-bridge-{run_id}",
        )
    )
    os.environ["RISKWATCH_COMMIT_INTERVAL_SECONDS"] = "1"
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    kafka, mosq, bridge = Broker(s), Mosquitto(s), BridgeService(s)
    worker = WorkerProcess(s, log_path=tmp / "worker.log")
    result: dict = {"devices": devices, "rate": rate, "seconds": seconds}
    clients: list = []
    try:
        log(kafka.start(log=log))
        ensure_topics(s, load_catalog(s.catalog_path))
        devs = [(f"bd-{i}", f"BE-{i}") for i in range(devices)]
        probes = [(f"bp-{i}", f"BP-{run_id}-{i}") for i in range(PROBES)]
        _register(s, devs + probes)
        passwords = {d: f"pw-{d}-{run_id}" for d, _ in devs + probes}
        mosq.write_acl(passwords)
        mosq.set_passwords(passwords)
        log(mosq.start(log=log))
        log(bridge.start(log=log))
        worker.start()
        log(f"worker on {s.web_port}; mosquitto {mosq.url}; bridge {bridge.url}; kafka {s.kafka_bootstrap}")
        clients = [_connect(s, d, passwords[d]) for d, _ in devs]
        probe_clients = [_connect(s, d, passwords[d]) for d, _ in probes]

        # 1. throughput
        acked0, cpu0 = _metric(bridge, "riskwatch_mqtt_acked_total"), _cpu_seconds(bridge.pid() or 0)
        wpid = worker.proc.pid if worker.proc else 0
        wcpu0 = _cpu_seconds(wpid)
        infos: list = []
        t0 = time.monotonic()
        for n in range(burst):
            c = clients[n % len(clients)]
            body = orjson.dumps({"event_id": f"tp-{n}", "value": 0.7})
            infos.append(c.publish(f"devices/{c._username.decode()}/telemetry", body, qos=1))
        t_pub = time.monotonic() - t0
        wait_for(lambda: _metric(bridge, "riskwatch_mqtt_acked_total") - acked0 >= burst, 300, "the bridge", 0.05)
        el = time.monotonic() - t0
        cpu = _cpu_seconds(bridge.pid() or 0) - cpu0
        result["throughput"] = {
            "messages": burst,
            "publish_seconds": round(t_pub, 2),
            "messages_per_s": round(burst / el),
            "bridge_cpu_us_per_message": round(cpu / burst * 1e6, 1),
        }
        # the worker behind it: the same readings, arriving as sensor batches per entity
        wait_for(lambda: _stored(worker, "tp-") >= burst, 300, "the worker to store the burst", 0.5)
        wel = time.monotonic() - t0
        result["throughput"]["worker_readings_per_s"] = round(burst / wel)
        result["throughput"]["worker_cpu_us_per_reading"] = round((_cpu_seconds(wpid) - wcpu0) / burst * 1e6, 1)
        log(f"throughput: {result['throughput']}")

        # 2. latency: paced load with probes
        alerts = Alerts(s)
        sent: dict[str, float] = {}

        def probe(el: float) -> None:
            k = len(sent)
            if k < PROBES and el >= k * 0.5 + 0.5:
                d, e = probes[k]
                sent[e] = time.time()
                probe_clients[k].publish(
                    f"devices/{d}/telemetry", orjson.dumps({"event_id": f"probe-{run_id}-{k}", "value": BREACH_MPA}), 1
                )

        lat_infos: list = []
        _publish_paced(clients, rate, seconds, "lat", lat_infos, probe)
        wait_for(lambda: all(e in alerts.first for e in sent), 60, "probe alerts", 0.2)
        lats = sorted((alerts.first[e] - t) * 1000 for e, t in sent.items())
        result["latency"] = {
            "probes": len(lats),
            "p50_ms": round(_percentile(lats, 0.5)),
            "p99_ms": round(_percentile(lats, 0.99)),
        }
        log(f"latency publish → alert: {result['latency']}")
        alerts.close()

        # 3. faults
        if faults:
            events: list[str] = []

            def fault(el: float) -> None:
                if el >= seconds * 0.2 and "bridge" not in events:
                    events.append("bridge")
                    log(bridge.stop(kill=True))
                    log(bridge.start(log=log))
                elif el >= seconds * 0.45 and "mosquitto" not in events:
                    events.append("mosquitto")
                    log(mosq.stop())
                    log(mosq.start(log=log))
                elif el >= seconds * 0.7 and "kafka" not in events:
                    events.append("kafka")
                    log(kafka.stop())
                    log(kafka.start(log=log))

            f_infos: list = []
            published = _publish_paced(clients, rate, seconds, "ft", f_infos, fault)
            # a message published while mosquitto was down is resent by the device's client on reconnect
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(_puback(i) for i in f_infos):
                time.sleep(0.5)
            acked = sum(1 for i in f_infos if _puback(i))
            bench_restarts = _wait_stored(worker, acked, log)
            time.sleep(3)
            result["faults"] = {
                "events": events,
                "published": published,
                "in_acknowledged_by_mosquitto": acked,
                "stored_distinct": _stored(worker, "ft-"),
                "worker_restarts": worker.restarts,
                "worker_restarted_by_bench_after_a_stall": bench_restarts,
            }
            log(f"faults: {result['faults']}")
    finally:
        for c in clients:
            c.loop_stop()
        worker.stop()
        bridge.stop()
        mosq.stop()
        kafka.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result

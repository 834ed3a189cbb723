"""The demo's county through the real edges: the simulator's messages, each sent the way its source connects.

``riskwatch demo`` runs the simulator in process and hands every message to :class:`EdgeRouter`, which
sends it the way the county's sources connect (docs/sources.md, docs/mqtt.md, docs/imports.md):

- **registry** (互联网+监管 名录库): the first registry snapshot becomes an xlsx export with Chinese
  headers (riskwatch/data/imports/registry.yaml) and goes through the import; later changes come from
  the registry sync over the HTTP gateway (``POST /v1/registry``). The import keys an entity by its
  统一社会信用代码, so the router gives every simulated entity a valid credit code (:func:`credit_code`)
  and sends every other event under it;
- **devices**: ``POST /v1/device`` to the gateway (source ``amr-tzsb``);
- **sensors**: two vendors' platforms (:data:`MQTT_VENDORS`, one of them the kPa vendor) publish over
  MQTT through mosquitto and the bridge, each with ONE platform login allowed only its own devices'
  topics; the other vendors' readings come through an IoT platform's telemetry webhook to the gateway
  (mapping ``thingsboard_telemetry``, pressures in kPa);
- **video**: a 明厨亮灶 platform's alarm callbacks to the gateway (mapping ``mingchu_video``);
- **complaints**: the 12345 hotline's tickets as 工单 exports (xlsx, one per 12 simulated hours) through
  the import, matched to the registry by credit code or, for a third of them, by name and address;
- **inspections** stay on the departments' own Kafka topics, and messages that are not even JSON (the
  simulator's malformed injections) go to Kafka directly, as a broken producer's would.

Two device faults are added for the demo to catch: one freezer sensor of an MQTT vendor stops
reporting (a dead sensor) and one boiler reading arrives in ``psig``, a unit riskwatch does not know.

>>> credit_code("E000001")
'91411121MA0000001P'
>>> from stdnum.cn import uscc
>>> uscc.is_valid(credit_code("E000317"))
True
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from edge.gateway.mapping import load_mapping
from edge.imports.layout import load_layout
from riskwatch.settings import Settings

MQTT_VENDORS = ("iot-gw-01", "iot-gw-07")  # iot-gw-07 sends pressures in kPa (simulator.yaml kpa_gateways)
COMPLAINT_FILE_HOURS = 12  # the 12345 hotline exports its tickets twice a day
DEAD_AFTER_HOURS = 20  # simulated hours after the start when the dying sensor stops
HTTP_BATCH = 400  # readings per webhook request
HTTP_HOLD_S = 1.0  # real seconds a platform holds readings before it posts them

# channel -> (telemetry key, unit) of the IoT platform's webhook
TB_KEYS = {
    "boiler_pressure": ("pressure", "kPa"),
    "boiler_temp": ("temperature", "C"),
    "cold_chain_temp": ("coldTemp", "C"),
    "storage_humidity": ("humidity", "%RH"),
    "storage_temp": ("storageTemp", "C"),
    "vessel_pressure": ("vesselPressure", "kPa"),
    "elevator_fault": ("elevatorFault", "code"),
    "elevator_door_cycles": ("doorCycles", "cycles/h"),
    "pump_vibration": ("vibration", "mm/s"),
}


def _spelling(words: Mapping[str, str]) -> dict[str, str]:
    """code -> the first Chinese word an export or a vendor uses for it (the mapping data read backwards)."""
    out: dict[str, str] = {}
    for word, code in words.items():
        if not word.isascii():
            out.setdefault(str(code), word)
    return out


# what the county's exports and the 明厨亮灶 platform write, from the very data the edges map them back with
VIDEO_CLASS = _spelling(load_mapping("mingchu_video").spec.classes)  # riskwatch class -> platform alarm type
KIND_ZH = _spelling(load_layout("registry").values["kind"])  # entity kind -> 名录库 主体类型
CATEGORY_ZH = _spelling(load_layout("complaints").values["category"])  # complaint category -> 12345 问题分类
REGISTRY_HEADERS = (
    "主体名称",
    "统一社会信用代码",
    "许可证编号",
    "主体类型",
    "所属乡镇",
    "经营地址",
    "经度",
    "纬度",
    "登记状态",
    "更新时间",
)
COMPLAINT_HEADERS = (
    "工单编号",
    "来电时间",
    "诉求内容",
    "被反映单位",
    "被反映地址",
    "问题分类",
    "所属乡镇",
    "统一社会信用代码",
)
SOURCES = {  # gateway source -> (kinds, tz, mapping)
    "amr-tzsb": (("device", "registry"), "", ""),
    "iot-platform": (("sensor",), "", "thingsboard_telemetry"),
    "mingchu-video": (("video",), "Asia/Shanghai", "mingchu_video"),
}


def credit_code(entity_id: str) -> str:
    """A valid 统一社会信用代码 for a simulated entity (舞阳县 411121, a company's 91 prefix)."""
    from stdnum.cn import uscc

    digits = "".join(c for c in entity_id if c.isdigit()).rjust(7, "0")[-7:]
    body = f"91411121MA{digits}"
    return body + uscc.calc_check_digit(body)


def _xlsx(path: Path, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Path:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Sheet1")
    ws.append(list(headers))
    for r in rows:
        ws.append(list(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


@dataclass(slots=True)
class EdgeCounts:
    """What the router sent through each edge and what the edge refused at once (HTTP 207/400)."""

    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (edge, kind) -> events
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, first line) -> items
    queued: Counter[str] = field(default_factory=Counter)  # kind -> waiting for the office


class EdgeRouter:
    """A sink for :func:`riskwatch.cli.simulate.run_simulation`-style loops: ``send(topic, key, value)``."""

    def __init__(
        self, settings: Settings, catalog: Any, query: Callable[[str], list[dict]], log: Callable[[str], None]
    ):
        self.s = settings
        self.catalog = catalog
        self.query = query
        self.log = log
        self.counts = EdgeCounts()
        self.dir = Path("var/demo/edges")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.opened = False
        self.entities: dict[str, dict[str, Any]] = {}  # simulated entity_id -> its registry event (credit code)
        self.pending_registry: list[dict[str, Any]] = []
        self.pending_devices: list[dict[str, Any]] = []
        self.owner: dict[str, str] = {}  # device_id -> owner at the start (the ACL's platforms)
        self.complaints: list[dict[str, Any]] = []
        self.n_complaints = 0
        self.complaint_due = False
        self.pending_window: datetime | None = None
        self.complaint_window: datetime | None = None
        self.http_buf: dict[str, list[Any]] = defaultdict(list)  # source -> items
        self.http_since: dict[str, float] = {}
        self.keys: dict[str, str] = {}
        self.http = httpx.Client(base_url=f"http://{settings.gateway_host}:{settings.gateway_port}", timeout=60)
        self.mqtt: dict[str, Any] = {}  # vendor -> paho client
        self.mqtt_acked = 0
        self.mqtt_published = 0
        self.dead_device: str | None = None
        self.dead_entity = ""
        self.sim_end: datetime | None = None  # the last simulated time sent
        self.dead_at: datetime | None = None
        self.dead_reported = False
        self.unit_probe_sent = False
        self.import_reports: list[str] = []
        self.t_start: datetime | None = None
        self.blocked = 0.0  # real seconds spent importing files and waiting for the registry (not paced)
        from kafka import KafkaProducer

        self.kafka = KafkaProducer(**settings.kafka_kwargs(), acks="all", linger_ms=20, client_id="riskwatch-demo")

    # --- set-up -----------------------------------------------------------------------------------
    def create_sources(self) -> None:
        """The demo's gateway sources (a new key each run: an existing source is rotated)."""
        from edge.gateway.keys import SourceStore

        store = SourceStore.at(self.s.gateway_dir)
        for name, (kinds, tz, mapping) in SOURCES.items():
            if store.get(name) is None:
                self.keys[name] = store.add(name, kinds, tz=tz, mapping=mapping, rate=50_000)[1]
            else:
                store.set_disabled(name, False)
                self.keys[name] = store.rotate(name)

    # --- the sink ---------------------------------------------------------------------------------
    def send(self, topic: str, key: bytes, value: bytes) -> None:
        base = topic.removeprefix(self.s.topic_prefix)
        try:
            ev = orjson.loads(value)
            if not isinstance(ev, dict) or "entity_id" not in ev:
                raise ValueError
        except ValueError:
            return self._kafka(topic, key, value, "malformed")
        if self.t_start is None:
            self.t_start = datetime.fromisoformat(ev["occurred_at"])
        try:
            if base == "events.registry":
                return self._registry(ev)
            if base == "events.device":
                return self._device(ev)
        except (KeyError, ValueError, TypeError, AttributeError):
            return self._kafka(topic, key, value, "malformed")
        if not self.opened:
            self._open()
        if ev.get("entity_id") in self.entities:
            ev["entity_id"] = self.entities[ev["entity_id"]]["code"]
        try:
            if base == "events.sensor":
                return self._sensor(ev)
            if base == "events.video":
                return self._post("mingchu-video", "video", self._mingchu(ev))
            if base == "events.complaint":
                return self._complaint(ev)
        except (KeyError, ValueError, TypeError, AttributeError):  # a malformed injection no vendor would send
            return self._kafka(topic, key, orjson.dumps(ev), "malformed")
        finally:
            if self.complaint_due:
                last = self.complaints.pop()  # the first ticket of the next window
                self.import_complaints()
                self.complaints, self.complaint_window, self.complaint_due = [last], self.pending_window, False
        self._kafka(topic, str(ev["entity_id"]).encode(), orjson.dumps(ev), base.split(".")[1])  # inspections
        self._flush_http(force=False)

    def _kafka(self, topic: str, key: bytes, value: bytes, kind: str) -> None:
        self.kafka.send(topic, key=key, value=value)
        self.counts.sent[("Kafka", kind)] += 1

    # --- registry and devices -------------------------------------------------------------------------
    def _registry(self, ev: dict[str, Any]) -> None:
        eid = str(ev["entity_id"])
        if eid not in self.entities:
            self.entities[eid] = {**ev, "code": credit_code(eid)}
        ev = {**ev, "entity_id": self.entities[eid]["code"]}
        if not self.opened:
            self.pending_registry.append(ev)
        else:
            self._post("amr-tzsb", "registry", ev)

    def _device(self, ev: dict[str, Any]) -> None:
        if ev["entity_id"] in self.entities:
            ev["entity_id"] = self.entities[ev["entity_id"]]["code"]
        if not self.opened:
            self.pending_devices.append(ev)
            self.owner[ev["device_id"]] = ev.get("owner") or ""
        else:
            self._post("amr-tzsb", "device", ev)

    def _open(self) -> None:
        """The first non-registry message: import the registry file, register the devices, give the MQTT
        vendors their platform logins, connect them."""
        self.opened = True
        t0 = time.monotonic()
        self._import_registry()
        for i in range(0, len(self.pending_devices), HTTP_BATCH):
            self._post("amr-tzsb", "device", *self.pending_devices[i : i + HTTP_BATCH])
        self._flush_http(force=True)
        n_dev = len({d["device_id"] for d in self.pending_devices})
        n_ent = len({e["entity_id"] for e in self.pending_registry})
        self.log(f"  waiting until the worker has stored the {n_ent} registry entities and {n_dev} devices ...")
        from riskwatch.tools.runner import WaitTimeout, wait_for

        try:
            wait_for(
                lambda: self._stored("devices") >= n_dev and self._stored("registry") >= n_ent,
                timeout=120,
                what="the registry and the devices to be stored",
                interval=1.0,
            )
        except WaitTimeout as e:
            self.log(f"  [yellow]{e}; going on (unknown devices' readings are refused by the bridge)[/]")
        self._mqtt_connect()
        freezers = sorted(
            d["device_id"]
            for d in self.pending_devices
            if self.owner.get(d["device_id"]) == MQTT_VENDORS[0] and "cold_chain_temp" in d.get("channels", ())
        )
        if freezers and self.t_start is not None:
            self.dead_device = freezers[0]
            self.dead_entity = next(d["entity_id"] for d in self.pending_devices if d["device_id"] == freezers[0])
            self.dead_at = self.t_start + timedelta(hours=DEAD_AFTER_HOURS)
        self.blocked += time.monotonic() - t0

    def _stored(self, table: str) -> int:
        rows = self.query(f"SELECT count() AS n FROM riskwatch.{table} FINAL")
        return int(rows[0]["n"]) if rows else 0

    def _import_registry(self) -> None:
        from edge.imports.run import KafkaSender, run_import
        from edge.matching import Matcher

        rows = []
        for ev in self.pending_registry:
            at = datetime.fromisoformat(ev["occurred_at"]).strftime("%Y-%m-%d %H:%M:%S")
            status = "注销" if ev.get("action") == "closed" else "存续"
            rows.append(
                (
                    ev.get("name", ""),
                    ev["entity_id"],
                    ev.get("licence", ""),
                    KIND_ZH.get(ev.get("kind", ""), ev.get("kind", "")),
                    ev.get("township", ""),
                    ev.get("address", ""),
                    ev.get("lon"),
                    ev.get("lat"),
                    status,
                    at,
                )
            )
        path = _xlsx(self.dir / "名录库导出.xlsx", REGISTRY_HEADERS, rows)
        self._run_import(path, "registry", Matcher([]), run_import, KafkaSender)

    def _run_import(self, path: Path, kind: str, matcher: Any, run_import: Any, sender_cls: Any) -> None:
        from edge.imports.run import operator_source

        sender = sender_cls(self.s)
        last = [0.0]

        def progress(i: int, n: int) -> None:
            if i == n or time.monotonic() - last[0] > 2:
                last[0] = time.monotonic()
                if n >= 200:
                    self.log(f"    {path.name}: {i:,}/{n:,} rows")

        try:
            rep = run_import(
                path.read_bytes(),
                path.name,
                kind,
                catalog=self.catalog,
                matcher=matcher,
                source=operator_source(rep_layout(kind), "demo"),
                sender=sender,
                settings=self.s,
                report_dir=Path("var/imports"),
                progress=progress,
            )
        finally:
            sender.close()
        edge = "imports"
        self.counts.sent[(edge, kind)] += rep.ready
        self.counts.refused[(edge, kind)] += len(rep.refused)
        self.counts.queued[kind] += len(rep.queued)
        for r in rep.refused:
            self.counts.reasons[(rep.source, r.reason.splitlines()[0])] += 1
        how = ", ".join(f"{k} {v}" for k, v in sorted(rep.matched.items()))
        self.log(
            f"  import {kind} {path}: {rep.summary()}"
            + (f" (匹配方式: {how})" if how else "")
            + f"; report {rep.report_path}"
        )
        self.import_reports.append(str(rep.report_path))

    # --- sensors ------------------------------------------------------------------------------------
    def _sensor(self, ev: dict[str, Any]) -> None:
        dev = ev.get("device_id", "")
        at = datetime.fromisoformat(ev["occurred_at"])
        if self.sim_end is None or at > self.sim_end:
            self.sim_end = at
        if dev == self.dead_device and self.dead_at is not None and at >= self.dead_at:
            if not self.dead_reported:
                self.dead_reported = True
                self.log(f"  device {dev} ({MQTT_VENDORS[0]}, freezer) stops reporting at {at:%m-%d %H:%M} (simulated)")
            return
        vendor = self.owner.get(dev, "")
        if vendor in self.mqtt:
            reading: dict[str, Any] = {
                k: ev[k] for k in ("event_id", "channel", "value", "unit", "occurred_at") if k in ev
            }
            self._publish(vendor, dev, reading)
            if not self.unit_probe_sent and ev.get("channel") == "boiler_pressure" and vendor == MQTT_VENDORS[0]:
                self.unit_probe_sent = True  # a vendor that writes gauge pressure as "psig"
                self._publish(vendor, dev, {**reading, "event_id": f"{ev['event_id']}-psig", "unit": "psig"})
                self.log(f"  device {dev} sends one reading in 'psig' (a unit riskwatch does not know)")
            return
        key, unit = TB_KEYS.get(ev.get("channel", ""), (ev.get("channel", ""), ev.get("unit", "")))
        value = ev.get("value")
        if unit == "kPa" and ev.get("unit") == "MPa" and isinstance(value, int | float):
            value = round(value * 1000, 3)
        item = {
            "deviceName": dev,
            "ts": int(at.timestamp() * 1000),
            "metadata": {"entityId": ev["entity_id"]},
            "values": {key: value},
        }
        self._post("iot-platform", "sensor", item)

    def _mqtt_connect(self) -> None:
        import paho.mqtt.client as mqtt

        from edge.mqtt.broker import new_device_password
        from edge.mqtt.registry import load_devices
        from riskwatch.tools.mqtt import Mosquitto, worker_query

        mosq = Mosquitto(self.s)
        devices = load_devices(self.s, worker_query(self.s))
        for vendor in MQTT_VENDORS:
            pw = new_device_password()
            mosq.set_password(vendor, pw)
            self._pw = getattr(self, "_pw", {}) | {vendor: pw}
        n = mosq.write_acl(devices)
        mosq.reload()
        time.sleep(0.5)
        owned = Counter(d.owner for d in devices.values())
        for vendor in MQTT_VENDORS:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-{vendor}", protocol=mqtt.MQTTv5)
            c.username_pw_set(vendor, self._pw[vendor])
            c.max_inflight_messages_set(500)
            c.max_queued_messages_set(0)
            c.on_publish = self._on_publish
            c.connect(self.s.mqtt_host, self.s.mqtt_port)
            c.loop_start()
            self.mqtt[vendor] = c
        self.log(
            f"  MQTT: ACL rebuilt from the registry ({n} devices); platform logins "
            + ", ".join(f"{v} ({owned[v]} devices)" for v in MQTT_VENDORS)
            + f" connected to mqtt://{self.s.mqtt_host}:{self.s.mqtt_port}"
        )

    def _on_publish(self, client: Any, userdata: Any, mid: Any, reason: Any, properties: Any) -> None:
        self.mqtt_acked += 1
        if getattr(reason, "is_failure", False):
            self.counts.refused[("MQTT", "sensor")] += 1

    def _publish(self, vendor: str, device: str, reading: dict[str, Any]) -> None:
        self.mqtt[vendor].publish(f"devices/{device}/telemetry", orjson.dumps(reading), qos=1)
        self.mqtt_published += 1
        self.counts.sent[("MQTT", "sensor")] += 1

    # --- video --------------------------------------------------------------------------------------
    @staticmethod
    def _mingchu(ev: dict[str, Any]) -> dict[str, Any]:
        at = datetime.fromisoformat(ev["occurred_at"])
        return {
            "alarmId": ev["event_id"],
            "storeCode": ev["entity_id"],
            "deviceSerial": ev.get("camera_id"),
            "alarmType": VIDEO_CLASS.get(ev.get("cls", ""), ev.get("cls")),
            "score": round(float(ev.get("confidence") or 0) * 100, 1),
            "alarmTime": at.strftime("%Y-%m-%d %H:%M:%S"),  # local wall time: the source declares Asia/Shanghai
        }

    # --- complaints ---------------------------------------------------------------------------------
    def _complaint(self, ev: dict[str, Any]) -> None:
        """Every complaint reaches the county through the 12345 hotline's export (12315 tickets are forwarded
        to 12345 in the county), a file per 12 simulated hours."""
        at = datetime.fromisoformat(ev["occurred_at"])
        window = at.replace(minute=0, second=0, microsecond=0, hour=at.hour - at.hour % COMPLAINT_FILE_HOURS)
        if self.complaint_window is not None and window != self.complaint_window:
            self.complaint_due = True  # imported by send(), outside its handling of malformed messages
            self.pending_window = window
        else:
            self.complaint_window = window
        self.complaints.append(ev)

    def import_complaints(self) -> None:
        """The 12345 hotline's export of the current window's tickets, imported and matched."""
        if not self.complaints:
            return
        from edge.imports.run import KafkaSender, run_import
        from edge.matching import load_matcher

        by_code = {e["code"]: e for e in self.entities.values()}
        rows = []
        for ev in self.complaints:
            self.n_complaints += 1
            e = by_code.get(ev["entity_id"], {})
            at = datetime.fromisoformat(ev["occurred_at"])
            code = ev["entity_id"] if e and self.n_complaints % 3 else ""  # a third: name and address only
            rows.append(
                (
                    f"GD{at:%Y%m%d%H%M%S}{ev['event_id'][:4].upper()}",
                    at.strftime("%Y-%m-%d %H:%M:%S"),
                    ev.get("text", ""),
                    e.get("name", "(未说明)"),
                    ev.get("location") or e.get("address", ""),
                    CATEGORY_ZH.get(ev.get("category", ""), ev.get("category", "")),
                    ev.get("township") or e.get("township", ""),
                    code,
                )
            )
        w = self.complaint_window or datetime.now()
        path = _xlsx(self.dir / f"12345工单_{w:%m%d_%H%M}.xlsx", COMPLAINT_HEADERS, rows)
        self.complaints = []
        t0 = time.monotonic()
        self._run_import(path, "complaints", load_matcher(self.s), run_import, KafkaSender)
        self.blocked += time.monotonic() - t0

    # --- the gateway ----------------------------------------------------------------------------------
    def _post(self, source: str, kind: str, *items: Any) -> None:
        buf = self.http_buf[f"{source}/{kind}"]
        if not buf:
            self.http_since[f"{source}/{kind}"] = time.monotonic()
        buf.extend(items)
        if len(buf) >= HTTP_BATCH:
            self._send_http(f"{source}/{kind}")
        else:
            self._flush_http(force=False)

    def _flush_http(self, force: bool) -> None:
        now = time.monotonic()
        for k, buf in list(self.http_buf.items()):
            if buf and (force or now - self.http_since.get(k, now) >= HTTP_HOLD_S):
                self._send_http(k)

    def _send_http(self, k: str) -> None:
        source, kind = k.split("/")
        items, self.http_buf[k] = self.http_buf[k], []
        for _attempt in range(10):
            r = self.http.post(
                f"/v1/{kind}", content=orjson.dumps(items), headers={"Authorization": f"Bearer {self.keys[source]}"}
            )
            if r.status_code in (429, 503):
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            break
        edge = "HTTP gateway"
        if r.status_code not in (202, 207, 400):
            self.log(f"  [red]gateway {source} {kind}: HTTP {r.status_code} {r.text[:300]}[/]")
            return
        body = r.json()
        self.counts.sent[(edge, kind)] += len(items)
        self.counts.refused[(edge, kind)] += int(body.get("refused", 0))
        self.counts.queued[kind] += int(body.get("queued", 0))
        for res in body.get("results", []):
            for err in res.get("errors", []) if isinstance(res, dict) else []:
                msg = f"{err.get('loc', '')}: {err.get('msg', '')}" if isinstance(err, dict) else str(err)
                self.counts.reasons[(source, msg.splitlines()[0])] += 1

    # --- the end ------------------------------------------------------------------------------------
    def close(self) -> None:
        self._flush_http(force=True)
        self.import_complaints()
        self.kafka.flush(timeout=60)
        self.kafka.close(timeout=10)
        deadline = time.monotonic() + 60
        while self.mqtt_acked < self.mqtt_published and time.monotonic() < deadline:
            time.sleep(0.2)
        for c in self.mqtt.values():
            c.disconnect()
            c.loop_stop()
        self.http.close()


def rep_layout(kind: str) -> str:
    """The import layout's name of a kind (the ``import:<layout>:<who>`` source)."""
    return {"complaints": "12345"}.get(kind, kind)

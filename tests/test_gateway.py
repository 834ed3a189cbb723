"""The HTTP ingest gateway against the real broker: one gateway process per module, each refusal
case, the 202/207/400 paths counted in Kafka, vendor mappings (the docs' examples), snapshot
evidence from a fake vendor on 127.0.0.1, 429, 503, and an idempotent re-post counted in ClickHouse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from edge.gateway.accept import Acceptor, parse_body
from edge.gateway.keys import Source, SourceStore
from edge.gateway.mapping import MappingError, load_mapping, parse_mapping
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.gateway_server import GatewayServer
from riskwatch.tools.runner import read_all, wait_for
from streams.runtime import topics as T
from tests import factories as F
from tests.conftest import Pipeline, free_port

ROOT = Path(__file__).resolve().parents[1]
JPEG = b"\xff\xd8\xff\xe0" + b"snapshot of a rodent" * 50
CATALOG = load_catalog()


@dataclass
class Gw:
    settings: Settings
    store: SourceStore
    url: str
    tmp: Path

    def add(self, kinds: str = "sensor", **kw) -> tuple[str, str]:
        name = f"v{uuid.uuid4().hex[:8]}"
        _, key = self.store.add(name, tuple(kinds.split(",")), **kw)
        return name, key

    def post(self, kind: str, body: bytes | list | dict, key: str, ctype: str = "application/json", **headers):
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        h = {"Authorization": f"Bearer {key}", "Content-Type": ctype, **headers}
        return httpx.post(f"{self.url}/v1/{kind}", content=raw, headers=h, timeout=30)

    def topic(self, name: str) -> list:
        return read_all(self.settings, self.settings.topic(name))


@pytest.fixture(scope="module")
def gw(broker: Settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    run = uuid.uuid4().hex[:8]
    s = broker.model_copy(
        update=dict(
            topic_prefix=f"g{run}.",
            app_id=f"riskwatch-gw-{run}",
            web_port=free_port(),
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            partitions=2,
            gateway_dir=tmp / "gateway",
            gateway_port=free_port(),
            gateway_max_body_bytes=64 * 1024,
            gateway_kafka_timeout_seconds=20.0,
            gateway_snapshot_extra_hosts=["127.0.0.1"],  # the fake vendor below
            workbench_dir=tmp / "web",
        )
    )
    T.ensure_topics(s, CATALOG)
    server = GatewayServer(s)
    server.start(timeout=90)
    try:
        yield Gw(s, SourceStore.at(s.gateway_dir), server.url, tmp)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def vendor():
    """A fake 明厨亮灶 platform serving one snapshot on 127.0.0.1."""

    class H(BaseHTTPRequestHandler):
        hits: list[str] = []

        def do_GET(self):  # noqa: N802 - http.server's name
            H.hits.append(self.path)
            if self.path.startswith("/snap/ok"):
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(JPEG)))
                self.end_headers()
                self.wfile.write(JPEG)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", H.hits
    srv.shutdown()


def reading(entity: str, value: float = 3.5, **kw) -> dict:
    return {**F.sensor(entity, value), **kw}


def batches(gw: Gw, source: str) -> list[dict]:
    out = []
    for r in gw.topic("events.sensor"):
        v = orjson.loads(r.value)
        if v.get("gateway_id") == source:
            out.append(v)
    return out


def dead_of(gw: Gw, source: str) -> list[dict]:
    return [d for r in gw.topic("deadletter") if (d := orjson.loads(r.value))["source"] == source]


# --- keys and signatures -----------------------------------------------------------------------------
def test_a_wrong_key_is_401(gw):
    r = gw.post("sensor", [reading("E1")], "rwk_not-a-key")
    assert r.status_code == 401 and "unknown key" in r.json()["detail"]
    assert httpx.post(f"{gw.url}/v1/sensor", content=b"[]", timeout=30).status_code == 401


def test_a_disabled_key_is_401(gw):
    name, key = gw.add()
    gw.store.set_disabled(name, True)
    r = gw.post("sensor", [reading("E1")], key)
    assert r.status_code == 401 and "disabled" in r.json()["detail"]


def test_a_kind_the_source_may_not_send_is_403(gw):
    _, key = gw.add("video")
    assert gw.post("sensor", [reading("E1")], key).status_code == 403


def _sign(key: str, body: bytes, ts: float | None = None, nonce: str | None = None) -> dict:
    t = str(int(ts if ts is not None else time.time()))
    n = nonce or uuid.uuid4().hex
    sig = hmac.new(key.encode(), t.encode() + b"\n" + n.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    return {"X-Timestamp": t, "X-Nonce": n, "X-Signature": sig}


def test_signed_requests_bad_signature_expired_and_replayed_nonce_are_401(gw):
    name, key = gw.add(require_signature=True)
    body = orjson.dumps([reading("E-sig")])
    assert gw.post("sensor", body, key).status_code == 401  # unsigned, but the source must sign
    good = _sign(key, body)
    assert gw.post("sensor", body, key, **good).status_code == 202
    r = gw.post("sensor", body, key, **good)  # the same nonce again
    assert r.status_code == 401 and "already used" in r.json()["detail"]
    bad = {**_sign(key, body), "X-Signature": "0" * 64}
    r = gw.post("sensor", body, key, **bad)
    assert r.status_code == 401 and "HMAC" in r.json()["detail"]
    old = _sign(key, body, ts=time.time() - 3600)
    r = gw.post("sensor", body, key, **old)
    assert r.status_code == 401 and "window" in r.json()["detail"]
    tampered = _sign(key, body)
    assert gw.post("sensor", body.replace(b"3.5", b"9.5"), key, **tampered).status_code == 401


# --- bodies ------------------------------------------------------------------------------------------
def test_malformed_json_is_400_and_a_dead_letter_with_the_body(gw):
    name, key = gw.add()
    body = b'[{"event_id": "x", '
    r = gw.post("sensor", body, key)
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]
    (d,) = dead_of(gw, name)
    assert base64.b64decode(d["payload_b64"]) == body and "malformed JSON" in d["error"]


def test_a_payload_over_the_limit_is_413_before_parsing(gw):
    _, key = gw.add()
    r = gw.post("sensor", b"[" + b" " * (65 * 1024) + b"]", key)
    assert r.status_code == 413


def test_accepted_readings_are_batched_per_entity_in_kafka_with_source_from_the_key(gw):
    name, key = gw.add()
    items = [reading(f"E-b{i % 3}", source="someone-else") for i in range(250)]
    r = gw.post("sensor", items, key)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 250
    got = batches(gw, name)
    assert sorted(b["entity_id"] for b in got) == ["E-b0", "E-b1", "E-b2"]
    assert sum(len(b["readings"]) for b in got) == 250
    assert all(b["kind"] == "sensor_batch" and "source" not in b["readings"][0] for b in got)
    assert not dead_of(gw, name)


def test_ndjson_is_accepted_and_a_bad_line_is_one_refused_item(gw):
    name, key = gw.add()
    lines = [orjson.dumps(reading("E-nd")), b"{not json", orjson.dumps(reading("E-nd"))]
    r = gw.post("sensor", b"\n".join(lines) + b"\n", key, ctype="application/x-ndjson")
    assert r.status_code == 207 and [x["status"] for x in r.json()["results"]] == ["accepted", "refused", "accepted"]
    (d,) = dead_of(gw, name)
    assert base64.b64decode(d["payload_b64"]) == b"{not json"


def test_a_partly_bad_request_is_207_naming_each_field_path_and_dead_letters_the_bad_items(gw):
    name, key = gw.add()
    bad = reading("E-p", value="hot")
    items = [reading("E-p"), reading("E-p"), reading("E-p"), bad, reading("E-p", channel="nope")]
    r = gw.post("sensor", items, key)
    assert r.status_code == 207, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["accepted"] * 3 + ["refused"] * 2
    assert res[3]["errors"][0]["loc"] == "[3].value" and res[4]["errors"][0]["loc"] == "[4].channel"
    dead = sorted(dead_of(gw, name), key=lambda d: d["error"])
    assert len(dead) == 2 and all(d["source"] == name for d in dead)
    assert orjson.loads(base64.b64decode(dead[0]["payload_b64"])) == bad
    assert sum(len(b["readings"]) for b in batches(gw, name)) == 3


def test_nothing_accepted_is_400(gw):
    _, key = gw.add()
    r = gw.post("sensor", [{"event_id": "x"}], key)
    assert r.status_code == 400 and r.json()["refused"] == 1


def test_a_time_outside_the_accepted_window_is_refused(gw):
    _, key = gw.add()
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    r = gw.post("sensor", [reading("E-t", occurred_at=old), reading("E-t", occurred_at=future)], key)
    assert r.status_code == 400
    errs = [x["errors"][0] for x in r.json()["results"]]
    assert [e["loc"] for e in errs] == ["[0].occurred_at", "[1].occurred_at"]
    assert "older than" in errs[0]["msg"] and "future" in errs[1]["msg"]


def test_a_naive_time_needs_the_source_to_declare_a_zone(gw):
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    _, key = gw.add()
    r = gw.post("sensor", [reading("E-z", occurred_at=naive)], key)
    assert r.status_code == 400
    (e,) = r.json()["results"][0]["errors"]
    assert e["loc"] == "[0].occurred_at" and "no UTC offset" in e["msg"]
    name, key = gw.add(tz="UTC")
    assert gw.post("sensor", [reading("E-z", occurred_at=naive)], key).status_code == 202
    (b,) = batches(gw, name)
    assert b["readings"][0]["occurred_at"].endswith("+00:00")


def test_the_rate_limit_is_429_with_retry_after(gw):
    _, key = gw.add(rate=5.0)  # a burst of 10 events
    assert gw.post("sensor", [reading("E-r") for _ in range(10)], key).status_code == 202
    r = gw.post("sensor", [reading("E-r") for _ in range(5)], key)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


# --- mappings ----------------------------------------------------------------------------------------
def _docs_examples() -> dict[str, list]:
    """The JSON payloads shown in docs/sources.md, by the mapping named in the fence's comment."""
    text = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    out: dict[str, list] = {}
    for stem, body in re.findall(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", text, re.S):
        v = orjson.loads(body)
        out.setdefault(stem, []).extend(v if isinstance(v, list) else [v])
    return out


def test_the_docs_examples_map_to_valid_events():
    ex = _docs_examples()
    assert set(ex) == {"mingchu_video", "thingsboard_telemetry"}
    acc = Acceptor(CATALOG, max_age=timedelta(days=36500))
    for stem, payloads in ex.items():
        m = load_mapping(stem)
        src = Source("docs", (m.spec.kind,), "", stem, 100.0, False, False)
        out = acc.accept(src, m.spec.kind, parse_body(orjson.dumps(payloads), "application/json"))
        assert out.refused == 0, [r.errors for r in out.results]
        assert out.events and all(e.source == "docs" for e in out.events)
    units = {
        e.channel.value: e.unit
        for e in Acceptor(CATALOG, max_age=timedelta(days=36500))
        .accept(
            Source("d", ("sensor",), "", "thingsboard_telemetry", 1.0, False, False),
            "sensor",
            parse_body(orjson.dumps(ex["thingsboard_telemetry"]), "application/json"),
        )
        .events
    }
    assert units["boiler_pressure"] == "kPa"


def test_a_mapping_error_names_the_source_and_the_field():
    spec = yaml.safe_load((ROOT / "riskwatch/data/sources/mingchu_video.yaml").read_text(encoding="utf-8"))
    spec["classes"]["蟑螂"] = "cockroach"
    with pytest.raises(MappingError, match=r"mapping acme: field classes\.蟑螂"):
        parse_mapping("acme", yaml.safe_dump(spec, allow_unicode=True))
    spec = {"kind": "video", "fields": {"cls": "alarmType[?"}}
    with pytest.raises(MappingError, match=r"mapping acme: field fields\.cls"):
        parse_mapping("acme", yaml.safe_dump(spec))


def _callback(vendor_url: str, alarm: str, cls: str = "老鼠", pic: str = "/snap/ok-1.jpg") -> dict:
    at = (datetime.now(UTC) + timedelta(hours=8) - timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "alarmId": alarm,
        "deviceSerial": "CAM-33021-07",
        "channelNo": 1,
        "storeCode": "E-cafe",
        "storeName": "舞泉镇好味道餐馆",
        "alarmType": cls,
        "score": 91,
        "alarmTime": at,
        "picUrl": vendor_url + pic,
    }


def test_a_video_callback_is_mapped_and_its_snapshot_kept_content_addressed(gw, vendor):
    url, hits = vendor
    name, key = gw.add("video", mapping="mingchu_video")
    r = gw.post("video", [_callback(url, "A1"), _callback(url, "A2", cls="no_mask", pic="/snap/gone.jpg")], key)
    assert r.status_code == 202, r.text
    vids = [v for x in gw.topic("events.video") if (v := orjson.loads(x.value))["source"] == name]
    by = {v["event_id"]: v for v in vids}
    sha = hashlib.sha256(JPEG).hexdigest()
    assert by[f"{name}:A1"]["cls"] == "rodent" and by[f"{name}:A1"]["evidence_ref"] == f"sha256:{sha}"
    assert (gw.settings.workbench_dir / "attachments" / sha[:2] / f"{sha}.jpg").read_bytes() == JPEG
    assert by[f"{name}:A2"]["evidence_ref"] == url + "/snap/gone.jpg"  # fetch failed: accepted, URL kept
    gw.post("video", [_callback(url, "A1")], key)  # a re-sent callback: the image is not fetched again
    assert hits.count("/snap/ok-1.jpg") == 1


def test_an_unknown_vendor_class_is_refused_naming_the_field(gw, vendor):
    url, _ = vendor
    name, key = gw.add("video", mapping="mingchu_video")
    r = gw.post("video", _callback(url, "A9", cls="外星人"), key)
    assert r.status_code == 400
    (e,) = r.json()["results"][0]["errors"]
    assert e["loc"] == "[0].cls" and "外星人" in e["msg"] and "mapping mingchu_video" in e["msg"]
    (d,) = dead_of(gw, name)
    assert "外星人" in base64.b64decode(d["payload_b64"]).decode()


def test_iot_telemetry_makes_one_reading_per_channel_with_the_vendors_unit(gw):
    name, key = gw.add("sensor", mapping="thingsboard_telemetry")
    ts = int((time.time() - 60) * 1000)
    body = {
        "deviceName": "BLR-0012-P1",
        "ts": ts,
        "values": {"pressure": 812.5, "temperature": 168.2, "rssi": -61},
        "metadata": {"entityId": "E-boiler"},
    }
    assert gw.post("sensor", body, key).status_code == 202
    (b,) = batches(gw, name)
    assert {(x["channel"], x["unit"]) for x in b["readings"]} == {("boiler_pressure", "kPa"), ("boiler_temp", "C")}


# --- Kafka down, and idempotence downstream -----------------------------------------------------------
def test_kafka_unreachable_is_503_and_nothing_accepted(gw):
    from fastapi.testclient import TestClient

    from edge.gateway.app import create_app

    s = gw.settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "gateway_kafka_timeout_seconds": 3.0}
    )
    store = SourceStore(None)
    _, key = store.add("down", ("sensor",))
    with TestClient(create_app(s, CATALOG, store)) as c:
        r = c.post("/v1/sensor", content=orjson.dumps([reading("E-d")]), headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503 and r.headers["retry-after"] and "nothing was accepted" in r.json()["detail"]


def test_the_same_events_posted_twice_are_stored_once(gw):
    p = Pipeline(gw.settings, gw.tmp)
    try:
        p.start_worker()
        name, key = gw.add()
        items = [reading(f"E-i{i % 4}", 2.0 + i / 100) for i in range(40)]
        assert gw.post("sensor", items, key).status_code == 202
        assert gw.post("sensor", items, key).status_code == 202  # the vendor's retry after a timeout
        p.wait_consumed(timeout=180)
        q = f"SELECT count() AS n, uniqExact(event_id) AS u FROM riskwatch.events_sensor WHERE source = '{name}'"
        r = wait_for(lambda: (x := p.worker.query(q)) and x[0]["n"] >= 40 and x, 60, "stored readings")
        time.sleep(2)
        r = p.worker.query(q)
        assert r[0]["n"] == r[0]["u"] == 40
    finally:
        p.close()


def test_openapi_docs_are_served_for_vendors(gw):
    assert httpx.get(f"{gw.url}/docs", timeout=10).status_code == 200
    spec = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
    post = spec["paths"]["/v1/{kind}"]["post"]
    assert {"202", "207", "400", "401", "413", "429", "503"} <= set(post["responses"])
    assert "application/x-ndjson" in post["requestBody"]["content"]


def test_source_keys_are_stored_hashed_and_rotation_ends_the_old_key(tmp_path):
    from edge.gateway.keys import SourceError

    store = SourceStore.at(tmp_path)
    src, key = store.add("acme", ("sensor",), tz="Asia/Shanghai", mapping="thingsboard_telemetry")
    assert key.encode() not in (tmp_path / "sources.sqlite").read_bytes()
    new = store.rotate("acme")
    store._cache.clear()
    assert store.verify(key) is None and store.verify(new) == src
    with pytest.raises(SourceError, match="maps video events"):
        store.add("cams", ("sensor",), mapping="mingchu_video")
    with pytest.raises(SourceError, match="exists"):
        store.add("acme", ("sensor",))

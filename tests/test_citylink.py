"""Docking with the city platform: two real local KRaft brokers (the county's shared one and a
"city" one on other loopback ports) and a real MirrorMaker 2 (dedicated mode) between them, with
the masking/relay bridge. One city broker and one link for the module; tests run in file order
(the last one stops and restarts the city broker)."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
import uuid
from collections import defaultdict

import orjson
import pytest
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from riskwatch.settings import Settings
from riskwatch.tools.broker import Broker
from riskwatch.tools.citylink import (
    ORIGIN,
    SRC_OFFSET,
    Bridge,
    CityLink,
    city_remote_topic,
    city_settings,
    delete_run_topics,
    inbound_topic,
    mask_value,
    masked_topic,
    mm2_properties,
    run_settings,
)
from riskwatch.tools.citylink.topics import SRC_OFFSETS, family_kind, source_topics
from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.conftest import free_port

MOBILE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d(?:[\s\-]?\d){8}(?![0-9A-Za-z])")
ID18 = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])")
PII_TEXT = "已电话联系投诉人13812345678,身份证410521199001011234,座机0395-1234567"
FAMILY_SENDERS = ("amr", "police")  # the departments whose events.inspection.<dept> the run creates


@pytest.fixture(scope="module")
def city(broker: Settings, tmp_path_factory):
    cs = city_settings(broker, free_port(), free_port(), tmp_path_factory.mktemp("city-kafka"))
    b = Broker(cs)
    b.start()
    yield cs
    b.stop(timeout=5)  # a throwaway broker: no need for a clean shutdown
    shutil.rmtree(cs.kafka_data_dir, ignore_errors=True)


def _read(bootstrap: str, topic: str, timeout: float = 10.0, committed_only: bool = True) -> list:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        if not tps:
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout
        while any(c.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def _count(bootstrap: str, topic: str) -> int:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
        ends, starts = c.end_offsets(tps), c.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        c.close()


@pytest.fixture(scope="module")
def link(broker: Settings, city: Settings, tmp_path_factory):
    run = uuid.uuid4().hex[:8]
    s = run_settings(
        broker,
        city,
        run,
        prefix=f"c{run}.",
        app_id=f"riskwatch-test-{run}",
        link_dir=tmp_path_factory.mktemp("citylink"),
        citylink_offset_flush_ms=1000,
    )
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    admin.create_topics(
        [
            NewTopic(s.topic(t), 4, 1, topic_configs={"cleanup.policy": "compact"} if t == "audit.anchors" else {})
            for t in [*_run_sources(s), "events.task.city"]
        ]
    )
    admin.close()
    cadmin = KafkaAdminClient(bootstrap_servers=city.kafka_bootstrap)
    cadmin.create_topics([NewTopic(s.citylink_city_task_topic, 3, 1)])  # not the county's 4: the bridge re-keys
    cadmin.close()
    cl = CityLink(s)
    cl.start(log=print)
    try:
        wait_for(
            lambda: _topics(city.kafka_bootstrap) >= {city_remote_topic(s, t) for t in s.citylink_topics},
            120,
            f"MirrorMaker 2 to create the remote topics on the city; see {cl.log_file('mirrormaker')}",
        )
    except Exception:
        cl.stop()
        raise
    yield s, cl
    cl.stop(timeout=5)  # exactly-once MirrorMaker and the bridge resume exactly after a kill anyway
    delete_run_topics(s)


def _run_sources(s: Settings) -> list[str]:
    """The county topics of the run (unprefixed): a family's only for FAMILY_SENDERS (the bridge skips
    the other departments' topics, which do not exist)."""
    out = []
    for t in s.citylink_topics:
        out += [src.removeprefix(s.topic_prefix) for src in source_topics(s, t, FAMILY_SENDERS)]
    return out


def _topics(bootstrap: str) -> set[str]:
    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(a.list_topics())
    finally:
        a.close()


def test_the_package_examples_run():
    """riskwatch/tools is outside pytest's doctest paths: the link's examples (masking, names, properties) run here."""
    import doctest
    import importlib

    for name in ("", ".topics", ".masking", ".mm2", ".standin"):
        module = importlib.import_module(f"riskwatch.tools.citylink{name}")
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__


def test_properties_name_the_flows_and_escape_regexes():
    s = Settings(topic_prefix="x.", citylink_city_task_topic="events.task")
    p = mm2_properties(s)
    assert "clusters = county, city" in p
    assert "county->city.enabled = true" in p and "city->county.enabled = true" in p
    # a single backslash is an escape in .properties: the regex \. must be written \\.
    assert r"x\\.masked\\.alerts\\.all" in p and r"city->county.topics = events\\.task" in p
    assert "x.alerts.all" not in p  # the unmasked topic never leaves


def test_compose_runs_the_same_release_mirrormaker_with_the_bridge_properties():
    from pathlib import Path

    import yaml

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    mm, bridge = compose["mirrormaker"], compose["citylink-bridge"]
    assert mm["image"] == compose["kafka"]["image"]  # MirrorMaker of the broker's own Kafka release
    assert mm["command"][0].endswith("connect-mirror-maker.sh") and mm["command"][1] == "/etc/citylink/mm2.properties"
    assert "city-link config --out /etc/citylink/mm2.properties" in " ".join(bridge["command"])
    assert mm["depends_on"]["citylink-bridge"]["condition"] == "service_healthy"
    env = bridge["environment"]
    assert env["RISKWATCH_KAFKA_SASL_USERNAME"] == "citylink"
    for key in env:
        if key.startswith("RISKWATCH_"):
            assert key[len("RISKWATCH_") :].lower() in Settings.model_fields, key


def test_inspections_leave_as_one_family_read_by_the_citylink_principal():
    """Inspection results travel on events.inspection.<dept>: the link reads every department's topic
    (the catalog's) and the city still gets the one masked.events.inspection; the ACLs let it read them."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("apply_acls", root / "deploy/kafka/apply_acls.py")
    assert spec and spec.loader
    acls = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("apply_acls", acls)  # its dataclasses look their module up
    spec.loader.exec_module(acls)
    plan = acls.plan(root / "deploy/kafka/acls.yaml")

    s = Settings(topic_prefix="")
    assert "events.inspection.*" in s.citylink_topics and "events.inspection" not in s.citylink_topics
    assert masked_topic(s, "events.inspection.*") == "masked.events.inspection"
    bridge = Bridge(s)
    sources = [src for t in s.citylink_topics for src in bridge.sources(t)]
    departments = [d for d in plan.departments]
    assert {f"events.inspection.{d}" for d in departments} <= set(sources)
    reads = {b.name for b in plan.bindings if b.user == "citylink" and b.resource == "topic" and b.operation == "read"}
    assert set(sources) <= reads, set(sources) - reads  # literal grants, one per department
    assert "events.inspection" not in reads  # the old shared topic is empty: nothing to send
    assert family_kind("events.inspection.*") == "events.inspection" and family_kind("alerts.all") is None


def test_mask_value_masks_every_string_and_redacts_names():
    v = orjson.dumps(
        {"alert_id": "a1", "comment": PII_TEXT, "nested": [{"t": "13912345678"}], "inspectors": ["张三"], "n": 3}
    )
    out = orjson.loads(mask_value(v, {"inspectors"}))
    assert out["comment"] == "已电话联系投诉人138****5678,身份证4105**********1234,座机0395-*****67"
    assert out["nested"] == [{"t": "139****5678"}] and out["inspectors"] == ["***"] and out["n"] == 3
    assert mask_value(None) is None


def test_topics_arrive_masked_under_mm2_naming(link, city):
    s, _ = link
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    sent = {}
    for t in s.citylink_topics:
        family = t == "events.inspection.*"  # a result of the amr department, on its own topic
        ev = (
            {**F.inspection("ent-9"), "inspectors": ["张三", "李四"], "note": PII_TEXT}
            if family
            else {"entity_id": "ent-9", "topic": t, "comment": PII_TEXT}
        )
        md = p.send(s.topic("events.inspection.amr" if family else t), key=b"ent-9", value=orjson.dumps(ev)).get(30)
        sent[t] = md.partition
    p.close()
    for t in s.citylink_topics:
        remote = city_remote_topic(s, t)
        # one copy per entry; a family's (events.inspection.*) is named after its kind: masked.events.inspection
        assert remote == f"{s.citylink_county_alias}.{s.topic_prefix}masked.{family_kind(t) or t}"
        recs = wait_for(lambda remote=remote: _read(city.kafka_bootstrap, remote), 90, f"{remote} on the city")
        r = recs[0]
        assert r.key == b"ent-9" and r.partition == sent[t]  # MirrorMaker keeps key and partition
        text = r.value.decode()
        assert "138****5678" in text and "4105**********1234" in text
        assert not MOBILE.search(text) and not ID18.search(text), text
        if t == "events.inspection.*":
            v = orjson.loads(r.value)
            assert v["inspectors"] == ["***", "***"] and v["departments"] == ["amr"]
    cfg = KafkaAdminClient(bootstrap_servers=city.kafka_bootstrap)
    from kafka.admin import ConfigResource, ConfigResourceType

    got = cfg.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, city_remote_topic(s, "audit.anchors"), ["cleanup.policy"])]
    )
    cfg.close()
    assert next(iter(got["topic"].values()))["cleanup.policy"]["value"] == "compact"  # anchors stay compacted


def test_city_task_reaches_county_keyed_by_entity(link, city):
    s, _ = link
    p = KafkaProducer(bootstrap_servers=city.kafka_bootstrap, acks="all")
    tasks = [F.task(f"ent-{i}", department="amr") for i in range(12)]
    for i, t in enumerate(tasks):  # city partitions (3) say nothing about the county's (4)
        p.send(s.citylink_city_task_topic, value=orjson.dumps(t), partition=i % 3)
    p.send(s.citylink_city_task_topic, value=b"\xff not json", partition=0)  # reaches the worker's dead-letter path
    p.flush()
    p.close()
    target = s.topic("events.task.city")
    recs = wait_for(
        lambda: (r := _read(s.kafka_bootstrap, target)) and len(r) >= 13 and r,
        90,
        f"{len(tasks) + 1} city tasks on the county's {target} (via {inbound_topic(s)})",
    )
    assert len(recs) == 13
    by_id = {}
    for r in recs:
        assert dict(r.headers)[ORIGIN] == s.citylink_city_alias.encode()
        if r.value.startswith(b"{"):
            v = orjson.loads(r.value)
            by_id[v["task_id"]] = v
            assert r.key == v["entity_id"].encode()
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 4  # the county's own partitioning
        else:
            assert r.value == b"\xff not json" and r.key is None  # unchanged bytes: the worker dead-letters them
    assert by_id == {t["task_id"]: t for t in tasks}


def test_family_members_share_one_copy_and_resume_exactly_after_kill9(link, city):
    """Two departments' results for one entity land in one partition of masked.events.inspection; each
    record says how far every department's topic was copied there, so a kill -9 repeats and skips nothing."""
    s, cl = link
    copy = masked_topic(s, "events.inspection.*")
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")

    def send(rnd: int) -> None:
        for dept in FAMILY_SENDERS:
            for i in range(5):
                ev = {**F.inspection("ent-7"), "departments": [dept], "seq": f"{rnd}-{dept}-{i}"}
                p.send(s.topic(f"events.inspection.{dept}"), key=b"ent-7", value=orjson.dumps(ev))
        p.flush()

    def seqs() -> list[str]:
        return [v["seq"] for r in _read(s.kafka_bootstrap, copy) if "seq" in (v := orjson.loads(r.value))]

    send(1)
    wait_for(lambda: len(seqs()) >= 10, 60, f"the bridge to copy both departments' results to {copy}")
    assert cl.kill9("bridge")
    send(2)  # written while the bridge is down: its successor resumes from the copy's last record
    cl.start(mirror=False)
    wait_for(lambda: len(seqs()) >= 20, 60, f"the restarted bridge to copy the second round to {copy}")
    time.sleep(2)
    got = seqs()
    assert sorted(got) == sorted(f"{r}-{d}-{i}" for r in (1, 2) for d in FAMILY_SENDERS for i in range(5)), got
    last = max(
        (r for r in _read(s.kafka_bootstrap, copy) if r.key == b"ent-7"), key=lambda r: r.offset
    )  # the entity's partition: its last record holds both departments' positions
    assert set(orjson.loads(dict(last.headers)[SRC_OFFSETS])) == set(FAMILY_SENDERS)
    remote = city_remote_topic(s, "events.inspection.*")
    wait_for(
        lambda: sum(1 for r in _read(city.kafka_bootstrap, remote) if b'"seq"' in r.value) >= 20,
        90,
        f"MirrorMaker to copy both rounds to the city's {remote}",
    )
    p.close()


def test_kill9_mirrormaker_and_bridge_midstream_nothing_missing(link, city):
    s, cl = link
    n, rate = 2400, 400
    src = s.topic("alerts.all")
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)

    def produce():
        t0 = time.monotonic()
        for i in range(n):
            p.send(
                src,
                key=f"a{i % 50}".encode(),
                value=orjson.dumps({"alert_id": f"a{i % 50}", "seq": i, "message": PII_TEXT}),
            )
            if i % 40 == 0:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        p.flush()

    th = threading.Thread(target=produce)
    th.start()
    time.sleep(1.5)
    assert cl.kill9("bridge")
    cl.start(mirror=False)
    time.sleep(1.5)
    assert cl.kill9("mirrormaker")
    time.sleep(1.0)
    cl.start(bridge=False)
    th.join()
    p.close()
    copy = masked_topic(s, "alerts.all")
    total = _count(s.kafka_bootstrap, src)  # n, plus the record of the first test
    wait_for(lambda: _count(s.kafka_bootstrap, copy) >= total, 90, f"the bridge to copy {total} records to {copy}")
    copied = _read(s.kafka_bootstrap, copy, 30)
    # the bridge resumes exactly: every source offset copied once, to the same partition, in order
    assert [
        (r.partition, int(dict(r.headers)[SRC_OFFSET])) for r in sorted(copied, key=lambda r: (r.partition, r.offset))
    ] == [
        (r.partition, r.offset)
        for r in sorted(_read(s.kafka_bootstrap, src, 30), key=lambda r: (r.partition, r.offset))
    ]
    remote = city_remote_topic(s, "alerts.all")

    def city_side():
        got = _read(city.kafka_bootstrap, remote, 30)
        values = defaultdict(set)
        for r in got:
            if b'"seq"' in r.value:  # not the first test's record
                values[orjson.loads(r.value)["seq"]].add((r.key, r.value, r.partition))
        return (got, values) if len(values) >= n else None

    got, values = wait_for(city_side, 120, f"MirrorMaker to copy all {n} records to the city's {remote}", interval=2)
    assert set(values) == set(range(n))  # nothing missing on the city side
    assert all(len(v) == 1 for v in values.values())  # a duplicate could only be an exact replay ...
    assert len(got) == total  # ... and there is none: MirrorMaker runs exactly once (read_committed)


def test_no_personal_data_on_the_city_side(link, city):
    s, _ = link
    scanned = 0
    for t in _topics(city.kafka_bootstrap):
        if not t.startswith(f"{s.citylink_county_alias}.{s.topic_prefix}"):
            continue
        for r in _read(city.kafka_bootstrap, t, 30, committed_only=False):  # aborted copies too
            text = (r.value or b"").decode("utf-8", errors="replace")
            assert not MOBILE.search(text) and not ID18.search(text), f"{t}: {text[:200]}"
            assert "张三" not in text
            scanned += 1
    assert scanned > 2400


def test_county_keeps_working_while_city_is_down(link, city):
    s, cl = link
    t0 = time.monotonic()
    Broker(city).stop(timeout=5)
    print(f"city stopped in {time.monotonic() - t0:.1f}s")
    try:
        p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
        copy = masked_topic(s, "alerts.events")
        before = _count(s.kafka_bootstrap, copy)
        t0 = time.monotonic()
        for i in range(100):
            p.send(s.topic("alerts.events"), key=b"k", value=orjson.dumps({"alert_id": "down", "seq": i}))
        p.flush(30)
        assert time.monotonic() - t0 < 30  # county producers are not held up by the city
        wait_for(
            lambda: _count(s.kafka_bootstrap, copy) >= before + 100, 60, "the bridge to mask while the city is down"
        )
        p.close()
        time.sleep(3)
        assert cl.pid("mirrormaker") and cl.pid("bridge")  # MirrorMaker waits and retries; nothing crashed
        assert any("unreachable" in line for line in cl.status())
    finally:
        t1 = time.monotonic()
        Broker(city).start()
        print(f"city restarted in {time.monotonic() - t1:.1f}s")
    t2 = time.monotonic()
    remote = city_remote_topic(s, "alerts.events")
    wait_for(
        lambda: sum(1 for r in _read(city.kafka_bootstrap, remote) if b'"down"' in r.value) >= 100,
        180,
        "MirrorMaker to deliver what the county produced while the city was down",
        interval=1,
    )
    print(f"delivered {time.monotonic() - t2:.1f}s after the city came back")

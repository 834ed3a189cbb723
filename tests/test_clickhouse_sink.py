"""The ClickHouse sink against the real engine (chDB in a temporary directory).

chDB hosts one engine directory per process: this module uses ONE directory for all its tests
and closes every client it opens (module fixture teardown), so later modules can use another.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from schemas.events import (
    Alert,
    AlertTransition,
    Complaint,
    Contribution,
    DeadLetter,
    DisposalFeedback,
    EntityEvent,
    InspectionResult,
    SensorReading,
    VideoDetection,
)
from sinks import rows as R
from sinks.clickhouse import INSERT_SETTINGS, chdb_path, make_client, redact_url
from sinks.migrations import MIGRATIONS, migrate
from sinks.query import QueryRefused, execute_readonly, format_table, gate
from sinks.writer import ClickHouseWriter, RetryInfo, WriterClosed

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 8, 30, tzinfo=TZ)
DB = "riskwatch"
TABLES = {
    "events_registry", "events_sensor", "events_video", "events_complaint", "events_inspection", "events_feedback",
    "alerts", "alert_history", "dead_letters", "registry", "risk_scores", "schema_migrations",
    "events_task", "inspection_plans", "evidence", "audit_anchors", "devices", "notices", "notice_history",
    "rectification_orders",
}  # fmt: skip
CTX = {"catalog": load_catalog()}
TABLES |= {"match_queue", "match_aliases"}  # migration 11: entity matching (edge/matching.py)
TABLES |= {"credit"}  # migration 18: official credit tiers and lists (riskwatch/domain/credit.py)
TABLES |= {"judgements", "consultations"}  # migration 17: the task-force office (streams/engine/office.py)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('ch') / 'clickhouse'}"


@pytest.fixture(scope="module")
def settings(url) -> Settings:
    return Settings(
        clickhouse_url=url, clickhouse_database=DB, sink_batch_rows=1000, sink_batch_seconds=0.2, _env_file=None
    )


@pytest.fixture(scope="module")
def writer(settings):
    w = ClickHouseWriter(settings)
    w.open()
    yield w
    w.close(timeout=10)


@pytest.fixture(scope="module")
def raw(writer, url):
    """A second client (own handle) on the same engine directory, for checks behind the writer's back."""
    c = make_client(url)
    yield c
    c.close()


def count(raw, table: str, where: str = "1", final: bool = True) -> int:
    return raw.query(f"SELECT count() FROM {DB}.{table} {'FINAL' if final else ''} WHERE {where}").result_rows[0][0]


def sample_events(tag: str) -> list:
    e = f"ent-{tag}"
    v = lambda model, **kw: model.model_validate(  # noqa: E731
        {"event_id": f"{model.__name__}-{tag}", "entity_id": e, "occurred_at": T0.isoformat(), "source": "test", **kw},
        context=CTX,
    )
    return [
        v(
            EntityEvent,
            action="registered",
            name="舞泉镇鑫源食品有限公司",
            kind="food_producer",
            township="舞泉镇",
            address="舞泉镇人民路1号",
            licence="SC10441102100123",
            lat=33.44,
            lon=113.61,
        ),
        v(SensorReading, device_id="cold-7", channel="cold_chain_temp", value=9.5, unit="C"),
        v(VideoDetection, camera_id="cam-3", cls="rodent", confidence=0.93, evidence_ref="oss://clips/1.mp4"),
        v(
            Complaint,
            channel="12315",
            category="food_quality",
            township="舞泉镇",
            location="人民路联华超市,店主电话0395-7654321",
            text="我是张三,电话13812345678,身份证410521199001011234,在舞泉镇某超市买到过期食品,价格12.5元",
        ),
        v(
            InspectionResult,
            inspection_id=f"insp-{tag}",
            item_id=1,
            departments=["amr", "health"],
            inspectors=["amr-01"],
            checklist={"证照公示": True, "原料台账": False},
            outcome="fail",
            violations=[
                {"code": "V12", "severity": "serious", "description": "原料台账缺失"},
                {"code": "V03", "severity": "critical", "description": "使用过期原料"},
            ],
        ),
        v(
            DisposalFeedback,
            alert_id="al-1",
            department="amr",
            status="disposed",
            comment="已联系投诉人13912345678",
            result="责令整改",
        ),
    ]


def make_alert(alert_id: str, revision: int, status: str, level: str = "orange") -> Alert:
    return Alert(
        alert_id=alert_id,
        revision=revision,
        fingerprint="ent-a|1|cold_chain",
        entity_id="ent-a",
        entity_name="鑫源食品",
        entity_kind="food_producer",
        township="舞泉镇",
        item_id=1,
        item_name="食品生产",
        rule="cold_chain_temp_high",
        level=level,
        level_zh={"orange": "橙色", "red": "红色"}[level],
        status=status,
        score=70 + revision,
        title="冷链温度超标",
        message="冷库温度持续高于8℃",
        departments=["amr", "health"],
        lead_department="amr",
        explanation=[Contribution(signal="sensor.cold_chain_temp", value=0.8, detail="温度9.5℃")],
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=revision),
        updated_at=T0 + timedelta(minutes=revision),
        source_event_id=f"ev-{revision}",
    )


# --- client and migrations --------------------------------------------------------------------------
def test_url_helpers():
    assert chdb_path("chdb://var/clickhouse") == "var/clickhouse"
    assert chdb_path("chdb:///tmp/ch") == "/tmp/ch"
    assert redact_url("http://rw:s3cret@ch:8123/db") == "http://rw:***@ch:8123/db"


def test_migrations_are_idempotent(writer, raw):
    assert migrate(raw, DB) == []  # the writer already applied them
    assert migrate(raw, DB) == []
    assert raw.query(f"SELECT version FROM {DB}.schema_migrations FINAL ORDER BY version").result_rows == [
        (m.version,) for m in MIGRATIONS
    ]
    tables = dict(
        (
            (name, (engine, key, comment))
            for name, engine, key, comment in raw.query(
                "SELECT name, engine, sorting_key, comment FROM system.tables WHERE database = {db:String}",
                parameters={"db": DB},
            ).result_rows
        )
    )
    assert set(tables) >= TABLES  # plus the dashboard aggregates of sinks/migrations_mv.py
    assert {t for t in tables if t not in TABLES} == {t for t in tables if t.startswith("agg_")}
    assert tables["alerts"][:2] == ("ReplacingMergeTree", "alert_id")
    assert tables["dead_letters"][1] == "topic, partition, offset, indexes"
    assert "event_id" in tables["events_sensor"][1]
    assert all(tables[t][2] for t in TABLES)
    ddl = raw.query(f"SHOW CREATE TABLE {DB}.events_sensor").result_rows[0][0]
    assert "toIntervalDay(400)" in ddl and "toYYYYMM(occurred_at)" in ddl and "DateTime64(3, 'Asia/Shanghai')" in ddl


# --- writing ----------------------------------------------------------------------------------------
def test_each_event_kind_round_trips(writer):
    events = sample_events("rt")
    assert asyncio.run(writer.write_events(events)) == len(events)
    q = lambda sql: writer.query(sql, {"e": "ent-rt"})  # noqa: E731
    cols, rows = q(
        f"SELECT name, kind, township, licence, lat, occurred_at FROM {DB}.events_registry FINAL WHERE entity_id = "
        f"{{e:String}}"
    )
    assert rows == [("舞泉镇鑫源食品有限公司", "food_producer", "舞泉镇", "SC10441102100123", 33.44, T0)]
    assert rows[0][-1].utcoffset() == timedelta(hours=8)
    _, rows = q(f"SELECT device_id, channel, value, unit FROM {DB}.events_sensor FINAL WHERE entity_id = {{e:String}}")
    assert rows == [("cold-7", "cold_chain_temp", 9.5, "C")]
    _, rows = q(
        f"SELECT cls, round(toFloat64(confidence), 2), evidence_ref FROM {DB}.events_video FINAL WHERE entity_id = "
        f"{{e:String}}"
    )
    assert rows == [("rodent", 0.93, "oss://clips/1.mp4")]
    _, rows = q(
        f"SELECT channel, category, text, location FROM {DB}.events_complaint FINAL WHERE entity_id = {{e:String}}"
    )
    channel, category, text, location = rows[0]
    assert (channel, category) == ("12315", "food_quality")
    assert "13812345678" not in text and "410521199001011234" not in text and "7654321" not in location
    assert "138****5678" in text and "4105**********1234" in text and "价格12.5元" in text
    _, rows = q(
        f"SELECT item_id, departments, checklist, violation_codes, violation_severities, worst_severity, outcome "
        f"FROM {DB}.events_inspection FINAL WHERE entity_id = {{e:String}}"
    )
    assert rows == [
        (
            1,
            ["amr", "health"],
            {"证照公示": True, "原料台账": False},
            ["V12", "V03"],
            ["serious", "critical"],
            "critical",
            "fail",
        )
    ]
    _, rows = q(
        f"SELECT alert_id, status, comment, result FROM {DB}.events_feedback FINAL WHERE entity_id = {{e:String}}"
    )
    assert rows == [("al-1", "disposed", "已联系投诉人139****5678", "责令整改")]


def test_utc_time_is_stored_as_the_same_instant(writer, raw):
    e = SensorReading(event_id="utc-1", entity_id="ent-utc", occurred_at=datetime(2026, 11, 20, 0, 30, tzinfo=UTC),
                      source="t", device_id="d", channel="boiler_pressure", value=1.2, unit="MPa")  # fmt: skip
    writer.write_sync("events_sensor", [R.sensor_row(e)])
    at = raw.query(f"SELECT occurred_at FROM {DB}.events_sensor WHERE event_id = 'utc-1'").result_rows[0][0]
    assert at == datetime(2026, 11, 20, 8, 30, tzinfo=TZ) and at.utcoffset() == timedelta(hours=8)


def test_replay_writes_no_duplicate_after_final(writer, raw):
    events = sample_events("replay")
    grouped = R.event_rows(events)
    for _ in range(2):  # a Kafka replay: the same messages again
        for table, rows in grouped.items():
            writer.write_sync(table, rows)
    for table in grouped:
        assert count(raw, table, "entity_id = 'ent-replay'") == 1, table
    assert count(raw, "events_sensor", "entity_id = 'ent-replay'", final=False) in (1, 2)  # physically maybe twice

    dl = DeadLetter(topic="events.sensor", partition=2, offset=41, key="E1", payload_b64="eyJ4IjoxfQ==",
                    error="value: must be a finite number", received_at=T0)  # fmt: skip
    writer.write_sync("dead_letters", [R.dead_letter_row(dl)])
    writer.write_sync(
        "dead_letters", [R.dead_letter_row(dl.model_copy(update={"received_at": T0 + timedelta(hours=1)}))]
    )
    assert count(raw, "dead_letters", "topic = 'events.sensor' AND offset = 41") == 1


def test_dead_letters_keep_every_bad_reading_of_every_batch_after_final_and_optimize(writer, raw):
    def dl(offset: int, indexes: list[int], payload: bytes, **kw) -> DeadLetter:
        reasons = [f"readings[{i}] (event_id 'r{i}'): value: must be a finite number" for i in indexes]
        return DeadLetter(topic="events.sensor", partition=3, offset=offset, key="E-dl", received_at=T0,
                          payload_b64=base64.b64encode(payload).decode(), error="\n".join(["head", *reasons]),
                          indexes=indexes, reasons=reasons, **kw)  # fmt: skip

    first, second = dl(7, [1, 4, 9], b'{"batch": 1}'), dl(8, [1, 4, 9], b'{"batch": 2}')  # same indexes
    legacy = [  # an older worker: one letter per bad reading of offset 9, each with the whole payload
        DeadLetter(
            topic="events.sensor",
            partition=3,
            offset=9,
            key="E-dl",
            payload_b64="eA==",
            error=f"r{i}",
            index=i,
            received_at=T0,
        )  # fmt: skip
        for i in (2, 5)
    ]
    rows = [R.dead_letter_row(d) for d in (first, second, *legacy)]
    writer.write_sync("dead_letters", rows)
    writer.write_sync("dead_letters", rows[:2])  # a replay of the two batches: no duplicate after FINAL
    where = "topic = 'events.sensor' AND partition = 3"
    for optimize in (False, True):
        if optimize:
            raw.command(f"OPTIMIZE TABLE {DB}.dead_letters FINAL")
        got = raw.query(
            f"SELECT offset, indexes, reasons, base64Decode(payload) FROM {DB}.dead_letters FINAL WHERE {where} "
            "ORDER BY offset, indexes"
        ).result_rows
        assert [(o, list(ix)) for o, ix, _, _ in got] == [(7, [1, 4, 9]), (8, [1, 4, 9]), (9, [2]), (9, [5])]
        assert [p for *_, p in got][:2] == ['{"batch": 1}', '{"batch": 2}']  # each batch's payload, once
        assert all(len(r) == len(ix) and f"readings[{ix[0]}]" in r[0] for _, ix, r, _ in got[:2])
        n = raw.query(f"SELECT sum(length(indexes)) FROM {DB}.dead_letters FINAL WHERE {where}").result_rows[0][0]
        assert n == 8  # every bad reading: 3 + 3 + 1 + 1


def test_alerts_final_gives_latest_revision(writer):
    revisions = [
        make_alert("al-final", 3, "disposing", "red"),
        make_alert("al-final", 1, "firing"),
        make_alert("al-final", 2, "acknowledged"),
    ]
    for a in revisions:  # out of order, separate inserts (separate parts)
        writer.write_sync("alerts", [R.alert_row(a)])
    _, rows = writer.query(
        f"SELECT revision, status, level, departments, explanation_signals FROM {DB}.alerts FINAL WHERE alert_id = "
        f"'al-final'"
    )
    assert rows == [(3, "disposing", "red", ["amr", "health"], ["sensor.cold_chain_temp"])]

    tr = lambda seq, minutes, frm, to, actor, kind="status": AlertTransition(  # noqa: E731
        alert_id="al-final",
        seq=seq,
        entity_id="E1",
        at=T0 + timedelta(minutes=minutes),
        kind=kind,
        from_status=frm,
        to_status=to,
        actor=actor,
        comment="电话13812345678联系店主",
    )
    history = [
        tr(1, 0, "", "firing", "detector"),
        tr(2, 5, "firing", "firing", "amr", "feedback"),
        tr(3, 5, "firing", "acknowledged", "amr"),
        tr(4, 5, "acknowledged", "acknowledged", "health", "feedback"),
    ]
    writer.write_sync("alert_history", [R.transition_row(t) for t in history] * 2)  # a replay adds nothing
    _, rows = writer.query(
        f"SELECT seq, kind, to_status, actor, comment FROM {DB}.alert_history FINAL "
        "WHERE alert_id = 'al-final' ORDER BY seq"
    )
    assert [r[:4] for r in rows] == [
        (1, "status", "firing", "detector"),
        (2, "feedback", "firing", "amr"),
        (3, "status", "acknowledged", "amr"),
        (4, "feedback", "acknowledged", "health"),
    ]
    assert "13812345678" not in rows[0][4]  # free text is masked


def test_registry_and_risk_scores(writer):
    base = dict(entity_id="ent-reg", source="t", name="旧名称", kind="catering", township="舞泉镇")
    new = EntityEvent(event_id="r2", occurred_at=T0 + timedelta(days=1), action="updated", **{**base, "name": "新名称"})
    old = EntityEvent(event_id="r1", occurred_at=T0, action="registered", **base)
    writer.write_sync("registry", [R.registry_row(new)])
    writer.write_sync("registry", [R.registry_row(old)])  # late arrival of the older event
    _, rows = writer.query(f"SELECT name, status, last_event_id FROM {DB}.registry FINAL WHERE entity_id = 'ent-reg'")
    assert rows == [("新名称", "active", "r2")]
    top = [Contribution(signal="sensor.cold_chain_temp", value=0.7), Contribution(signal="video.rodent", value=0.2)]
    writer.write_sync("risk_scores", [R.risk_score_row("ent-reg", T0, 72.5, "orange", 1, top)] * 2)
    _, rows = writer.query(
        f"SELECT score, level, item_id, top_signals FROM {DB}.risk_scores FINAL WHERE entity_id = 'ent-reg'"
    )
    assert rows == [(72.5, "orange", 1, ["sensor.cold_chain_temp", "video.rodent"])]


class Recording:
    """Wraps a real client: records insert kwargs; the first ``fail`` inserts raise (before or after
    really inserting, i.e. a lost connection or a lost acknowledgement)."""

    def __init__(self, client, fail: int = 0, after: bool = False):
        self.client, self.fail, self.after = client, fail, after
        self.calls: list[dict] = []
        self.failures = 0

    def insert(self, *args, **kwargs):
        self.calls.append(kwargs)
        if self.failures < self.fail:
            self.failures += 1
            if self.after:
                self.client.insert(*args, **kwargs)
            raise OperationalError("connection reset by peer (injected)")
        return self.client.insert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_inserts_are_synchronous_async_insert_0(settings, url, writer):
    clients: list[Recording] = []
    factory = lambda: clients.append(Recording(make_client(url))) or clients[-1]  # noqa: E731
    with ClickHouseWriter(settings, client_factory=factory) as w:
        w.write_sync("events_sensor", [R.sensor_row(sample_events("sync")[1])])
    assert INSERT_SETTINGS["async_insert"] == 0
    inserts = clients[0].calls
    assert inserts and all(call["settings"]["async_insert"] == 0 for call in inserts)


@pytest.mark.parametrize("after", [False, True], ids=["connection-lost", "ack-lost"])
def test_flaky_client_rows_land_exactly_once(settings, url, raw, after):
    tag = f"flaky{int(after)}"
    clients: list[Recording] = []
    factory = lambda: clients.append(Recording(make_client(url), fail=3, after=after)) or clients[-1]  # noqa: E731
    retries: list[RetryInfo] = []
    rows = [
        R.sensor_row(
            SensorReading(
                event_id=f"{tag}-{i}",
                entity_id=f"ent-{tag}",
                occurred_at=T0 + timedelta(seconds=i),
                source="t",
                device_id="d",
                channel="storage_temp",
                value=i,
                unit="C",
            )
        )
        for i in range(250)
    ]
    w = ClickHouseWriter(
        settings, client_factory=factory, on_retry=retries.append, retry_initial_seconds=0.01, batch_rows=100
    )
    try:
        futures = [w.submit("events_sensor", rows[i : i + 50]) for i in range(0, 250, 50)]
        assert sum(f.result(timeout=20) for f in futures) == 250
    finally:
        w.close(timeout=10)
    assert [r.attempt for r in retries] == [1, 2, 3]
    assert all("ClickHouse unreachable" in r.message and "retry" in r.message for r in retries)
    assert all(len(call["column_names"]) == len(rows[0]) for call in clients[0].calls)
    assert count(raw, "events_sensor", f"entity_id = 'ent-{tag}'") == 250


def test_unreachable_server_is_retried_and_never_acknowledged(settings):
    retries: list[RetryInfo] = []
    enough = threading.Event()

    def on_retry(info: RetryInfo) -> None:
        retries.append(info)
        if len(retries) >= 2:
            enough.set()

    w = ClickHouseWriter(
        settings, url="http://127.0.0.1:1", on_retry=on_retry, retry_initial_seconds=0.05, retry_max_seconds=0.1
    )
    fut = w.submit("events_sensor", [R.sensor_row(sample_events("down")[1])])
    # batch_seconds (0.2 s) passes: the timer schedules the insert, which cannot succeed
    assert enough.wait(timeout=15), "the writer did not retry"
    assert not fut.done()  # not acknowledged while ClickHouse is down
    msg = retries[0].message
    assert (
        "ClickHouse unreachable at http://127.0.0.1:1" in msg
        and "retry 1 in" in msg
        and "check that the server is up" in msg
    )
    assert [r.attempt for r in retries[:2]] == [1, 2] and retries[1].wait >= retries[0].wait
    w.close(timeout=0.2)  # give up: the rows fail, so their Kafka offsets are never committed
    with pytest.raises(WriterClosed):
        fut.result(timeout=5)


def test_fault_file_fails_inserts_reads_still_answer_then_rows_land_once(settings, raw, tmp_path):
    down = tmp_path / "ch-down"
    down.touch()
    retries: list[RetryInfo] = []
    backing_off = threading.Event()
    on_retry = lambda info: (retries.append(info), backing_off.set())  # noqa: E731
    s = settings.model_copy(update={"fault_clickhouse_down_file": down})
    w = ClickHouseWriter(s, on_retry=on_retry, retry_initial_seconds=2.0, retry_max_seconds=2.0)
    rows = [
        R.sensor_row(
            SensorReading(
                event_id=f"fault-{i}",
                entity_id="ent-fault",
                occurred_at=T0,
                source="t",
                device_id="d",
                channel="storage_temp",
                value=i,
                unit="C",
            )
        )
        for i in range(20)
    ]
    try:
        w.open()  # connecting is not an insert: unaffected
        fut = w.submit("events_sensor", rows)
        assert backing_off.wait(timeout=15), "the writer did not retry"
        assert "simulated outage" in retries[0].message and str(down) in retries[0].message
        assert "ClickHouse unreachable" in retries[0].message
        # the writer thread is in a 2 s back-off: a read is answered meanwhile, not after it
        sql = f"SELECT count() FROM {DB}.events_sensor WHERE entity_id = 'ent-fault'"
        assert asyncio.run(asyncio.wait_for(w.aquery(sql), 1.0))[1] == [(0,)]
        assert not fut.done()
        down.unlink()
        assert fut.result(timeout=15) == 20
    finally:
        w.close(timeout=10)
    assert count(raw, "events_sensor", "entity_id = 'ent-fault'", final=False) == 20


def test_batches_flush_by_size_and_by_time(settings, url):
    clients: list[Recording] = []
    factory = lambda: clients.append(Recording(make_client(url))) or clients[-1]  # noqa: E731
    rows = [
        R.sensor_row(
            SensorReading(
                event_id=f"batch-{i}",
                entity_id="ent-batch",
                occurred_at=T0,
                source="t",
                device_id="d",
                channel="storage_temp",
                value=i,
                unit="C",
            )
        )
        for i in range(30)
    ]
    w = ClickHouseWriter(settings, client_factory=factory, batch_rows=10, batch_seconds=60)
    try:
        w.open()
        base = len(clients[0].calls)  # migrations' own insert
        by_size = [w.submit("events_sensor", rows[i : i + 5]) for i in range(0, 20, 5)]  # 2 full batches
        assert sum(f.result(timeout=10) for f in by_size) == 20  # resolved long before batch_seconds
        # one insert per full batch, or one for both if the second filled before the thread took the first
        assert 1 <= len(clients[0].calls) - base <= 2
        w.batch_seconds = 0.2  # read by the timer when the next batch starts
        late = w.submit("events_sensor", rows[20:23])  # below batch_rows: flushed by the timer
        assert late.result(timeout=10) == 3
    finally:
        w.close(timeout=10)


def test_async_api(writer):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        n = await writer.write(
            "events_sensor", [R.sensor_row(sample_events("async")[1])]
        )  # waits for the timer (0.2 s)
        cols, rows = await writer.aquery(f"SELECT count() FROM {DB}.events_sensor FINAL WHERE entity_id = 'ent-async'")
        t.cancel()
        return n, rows, ticks

    n, rows, ticks = asyncio.run(main())
    assert n == 1 and rows == [(1,)]
    assert ticks >= 5  # the loop kept running while ClickHouse worked on its own thread


# --- read-only queries ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        f"INSERT INTO {DB}.alerts (alert_id) VALUES ('x')",
        f"DROP TABLE {DB}.alerts",
        f"ALTER TABLE {DB}.alerts DELETE WHERE 1",
        f"CREATE TABLE {DB}.x (a Int8) ENGINE = Memory",
        f"SELECT 1; DROP TABLE {DB}.alerts",
        f"SELECT 1; -- harmless?\n DROP TABLE {DB}.alerts",
        "SELECT 1 INTO OUTFILE '/tmp/leak.csv'",
        "SYSTEM FLUSH LOGS",
        "KILL QUERY WHERE 1",
        "SET readonly = 0",
        "/* only a comment */",
        "",
    ],
)
def test_gate_refuses_non_read_statements(writer, raw, sql):
    with pytest.raises(QueryRefused):
        gate(raw, sql)
    with pytest.raises(QueryRefused):
        writer.query(sql)


@pytest.mark.parametrize(
    "sql",
    ["SELECT 'a;b' AS s;", "-- comment\nSELECT 1", "WITH 1 AS x SELECT x", "SHOW TABLES", f"DESCRIBE TABLE {DB}.alerts",
     "EXPLAIN SELECT 1", f"EXISTS {DB}.alerts", "SELECT 1 UNION ALL SELECT 2"],
)  # fmt: skip
def test_gate_accepts_reads(raw, sql):
    assert gate(raw, sql).statement


@pytest.mark.parametrize(
    "sql",
    [
        f"INSERT INTO {DB}.alerts (alert_id) VALUES ('x')",
        f"DROP TABLE {DB}.alerts",
        f"ALTER TABLE {DB}.alerts DELETE WHERE 1",
        f"CREATE TABLE {DB}.x (a Int8) ENGINE = Memory",
        "SELECT 1 SETTINGS readonly = 0",
    ],
)
def test_engine_refuses_writes_even_past_the_gate(raw, sql):
    """The second layer: with READ_SETTINGS (readonly=1) the engine itself refuses what the gate would."""
    before = count(raw, "alerts", final=False)
    with pytest.raises(DatabaseError, match="readonly|READONLY"):
        execute_readonly(raw, sql)
    assert count(raw, "alerts", final=False) == before
    assert raw.query(f"EXISTS TABLE {DB}.alerts").result_rows == [(1,)]


def test_query_limit_and_format_table(writer):
    cols, rows = writer.query("SELECT number AS n, '舞泉镇' AS township FROM numbers(100000)", limit=5)
    assert cols == ["n", "township"] and len(rows) == 5
    text = format_table(cols, rows)
    assert "township" in text and "舞泉镇" in text and "(5 rows)" in text

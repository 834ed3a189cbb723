"""Imports (edge/imports, ``riskwatch import``): sample exports with Chinese headers, generated here,
go through the column mappings of riskwatch/data/imports/. Bad input is refused with row numbers and
reasons (report CSV, dead letters with the source); ``--dry-run`` sends nothing; re-importing
stores no duplicate (the rows a real ClickHouse engine keeps after FINAL are counted)."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from edge.imports.rows import resolve
from edge.imports.run import MissingColumns, run_import
from edge.matching import Matcher, RegistryEntry
from riskwatch.domain.catalog import load_catalog
from riskwatch.tools.runner import read_all, settings_env, wait_for
from schemas.events import Complaint, DeadLetter, EntityEvent, MatchQueueItem
from tests.samples import (
    COMPLAINT_HEADERS,
    COMPLAINT_ROWS,
    DINER,
    FOOD,
    REGISTRY_HEADERS,
    REGISTRY_ROWS,
    write_csv,
    write_xlsx,
)

CAT = load_catalog()
SRC = "import:test:op"


class Recorder:
    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self) -> None:
        pass


def registry_matcher() -> Matcher:
    return Matcher(
        [
            RegistryEntry(FOOD, "舞阳县某某食品有限公司", "舞泉镇", "舞泉镇人民路1号", "SC11041112100001"),
            RegistryEntry(DINER, "舞阳县老王饭店(个体)", "吴城镇", "吴城镇建设街8号", "JY24111210000002"),
        ]
    )


def _run(path: Path, kind: str, **kw):
    return run_import(path.read_bytes(), path.name, kind, catalog=CAT, source=SRC, **kw)


def test_registry_xlsx_becomes_entity_events_keyed_by_credit_code(tmp_path):
    p = write_xlsx(tmp_path / "名录库.xlsx", REGISTRY_HEADERS, REGISTRY_ROWS)
    rec = Recorder()
    rep = _run(p, "registry", matcher=Matcher([]), sender=rec, report_dir=tmp_path)
    assert (rep.rows, rep.ready, rep.refused) == (3, 3, [])
    evs = [EntityEvent.model_validate_json(v) for t, _, v in rec.sent]
    assert [e.entity_id for e in evs][:2] == [FOOD, DINER]
    assert [e.kind for e in evs] == ["food_producer", "catering", "retail_pharmacy"]
    assert evs[0].lat == 33.44 and evs[0].source == SRC and evs[0].occurred_at.isoformat().endswith("+08:00")
    again = Recorder()
    _run(p, "registry", matcher=Matcher([]), sender=again)
    assert [v for *_, v in again.sent] == [v for *_, v in rec.sent]  # same rows, same event ids


def test_a_workbook_with_missing_columns_is_refused_up_front(tmp_path):
    headers = [h for h in REGISTRY_HEADERS if h not in ("主体类型", "更新时间")]
    rows = [[c for h, c in zip(REGISTRY_HEADERS, r, strict=True) if h in headers] for r in REGISTRY_ROWS]
    p = write_xlsx(tmp_path / "缺列.xlsx", headers, rows)
    rec = Recorder()
    with pytest.raises(MissingColumns) as e:
        _run(p, "registry", matcher=Matcher([]), sender=rec)
    assert e.value.missing == ["主体类型", "更新时间"] and "主体类型、更新时间" in str(e.value)
    assert rec.sent == []


def test_bad_rows_are_refused_with_row_numbers_reasons_report_and_dead_letters(tmp_path):
    rows = [list(r) for r in REGISTRY_ROWS]
    rows[0][1] = FOOD[:-1] + ("0" if FOOD[-1] != "0" else "1")  # bad check digit
    rows[1][3] = "洗浴中心"  # unknown 主体类型
    rows[2][9] = "2026-13-45"  # bad date
    p = write_csv(tmp_path / "bad.csv", REGISTRY_HEADERS, rows)
    rec = Recorder()
    rep = _run(p, "registry", matcher=Matcher([]), sender=rec, report_dir=tmp_path)
    why = {r.row: r.reason for r in rep.refused}
    assert set(why) == {2, 3, 4}
    assert "校验位错误" in why[2] and "洗浴中心" in why[3] and "主体类型" in why[3]
    assert why[4] == "更新时间「2026-13-45」不是有效的日期时间"
    assert [t for t, *_ in rec.sent] == ["deadletter"] * 3
    dl = DeadLetter.model_validate_json(rec.sent[0][2])
    assert dl.source == SRC and dl.error.startswith("第 2 行") and dl.topic == "events.registry"
    with open(rep.report_path, encoding="utf-8-sig") as f:
        report = list(csv.reader(f))
    assert report[0] == ["行号", "标识", "状态", "原因"]
    assert [r[0] for r in report[1:]] == ["2", "3", "4"] and all(r[2] == "拒收" for r in report[1:])


def test_complaints_are_matched_queued_or_keyed_to_their_township(tmp_path):
    p = write_xlsx(tmp_path / "12345.xlsx", COMPLAINT_HEADERS, COMPLAINT_ROWS)
    rec = Recorder()
    rep = _run(p, "complaints", matcher=registry_matcher(), sender=rec, report_dir=tmp_path)
    assert rep.refused == [] and rep.ready == 3 and len(rep.queued) == 1
    by_topic: dict[str, list[bytes]] = {}
    for t, _, v in rec.sent:
        by_topic.setdefault(t, []).append(v)
    cs = [Complaint.model_validate_json(v) for v in by_topic["events.complaint"]]
    assert [(c.entity_id, c.match.method.value) for c in cs] == [
        (FOOD, "name_address"),
        (DINER, "name_address"),
        ("township:lianhua", "township"),
    ]
    assert all(c.channel.value == "12345" and c.source == SRC for c in cs)
    assert 0.85 <= cs[0].match.confidence <= 1
    q = MatchQueueItem.model_validate_json(by_topic["events.unmatched"][0])
    assert q.name == "王记饭店" and q.candidates[0].entity_id == DINER and "低于阈值" in q.reason
    ev = resolve(q, DINER, CAT)
    assert isinstance(ev, Complaint) and ev.entity_id == DINER and ev.match.method.value == "office"
    assert ev.event_id == q.queue_id  # the same event: a second resolution stores no duplicate
    assert all(c.entity_id != "unknown" for c in cs)


def test_unknown_category_and_bad_time_in_complaints(tmp_path):
    rows = [list(r) for r in COMPLAINT_ROWS[:2]]
    rows[0][5] = "噪音扰民"
    rows[1][1] = "明天上午"
    rep = _run(write_csv(tmp_path / "c.csv", COMPLAINT_HEADERS, rows), "complaints", matcher=registry_matcher(),
               dry_run=True)  # fmt: skip
    why = {r.row: r.reason for r in rep.refused}
    assert "问题分类「噪音扰民」不在映射中" in why[2] and why[3] == "来电时间「明天上午」不是有效的日期时间"


def test_dry_run_sends_nothing(tmp_path):
    rec = Recorder()
    p = write_xlsx(tmp_path / "12345.xlsx", COMPLAINT_HEADERS, COMPLAINT_ROWS)
    rep = _run(p, "complaints", matcher=registry_matcher(), sender=rec, dry_run=True, report_dir=tmp_path)
    assert rec.sent == [] and rep.ready == 3 and len(rep.preview) == 4
    assert "将发送 3 条事件" in rep.summary()


# --- on the real broker: the CLI, acks=all, and re-import stores no duplicate ------------------------------
@pytest.fixture
def kafka(broker, monkeypatch, tmp_path):
    from kafka.admin import KafkaAdminClient, NewTopic

    s = broker.model_copy(update=dict(topic_prefix=f"t{uuid.uuid4().hex[:8]}."))
    names = [s.topic(t) for t in ("events.registry", "events.complaint", "events.unmatched", "deadletter")]
    admin = KafkaAdminClient(**s.kafka_kwargs())
    admin.create_topics([NewTopic(t, 1, 1) for t in names])
    from kafka import KafkaConsumer

    c = KafkaConsumer(**s.kafka_kwargs())
    wait_for(lambda: all(c.partitions_for_topic(t) for t in names), 30, "the test topics' leaders", interval=0.2)
    c.close()
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    yield s
    admin.delete_topics(names)
    admin.close()


def _cli(*args: str):
    from riskwatch.cli.main import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_dry_run_reimport_and_stored_rows(kafka, tmp_path):
    s = kafka
    p = write_xlsx(
        tmp_path / "名录库.xlsx",
        REGISTRY_HEADERS,
        [*REGISTRY_ROWS, ["坏代码公司", "123", "", "零售药店", "舞泉镇", "", "", "", "", "2026-11-01"]],
    )
    r = _cli("import", "registry", str(p), "--dry-run")
    assert r.exit_code == 0, r.output
    assert "试运行" in r.output and "将发送 3 条事件" in r.output and "拒收 1 行" in r.output and "报告:" in r.output
    assert read_all(s, s.topic("events.registry")) == [] and read_all(s, s.topic("deadletter")) == []
    for _ in range(2):
        r = _cli("import", "registry", str(p))
        assert r.exit_code == 0 and "已发送 3 条事件" in r.output, r.output
    msgs = read_all(s, s.topic("events.registry"))
    assert len(msgs) == 6  # sent twice ...
    dls = [DeadLetter.model_validate_json(m.value) for m in read_all(s, s.topic("deadletter"))]
    assert len(dls) == 2 and dls[0].source.startswith("import:registry:")
    # ... stored once: the product's tables on the real engine
    from sinks.clickhouse import INSERT_SETTINGS, make_client
    from sinks.migrations import migrate
    from sinks.rows import COLUMNS, dead_letter_row, event_row, registry_row

    ch = make_client(f"chdb://{tmp_path / 'ch'}")
    migrate(ch, "riskwatch")
    evs = [EntityEvent.model_validate_json(m.value) for m in msgs]
    for table, rows in (
        ("events_registry", [event_row(e)[1] for e in evs]),
        ("registry", [registry_row(e) for e in evs]),
        ("dead_letters", [dead_letter_row(d) for d in dls]),
    ):
        ch.insert(table, rows, column_names=list(COLUMNS[table]), database="riskwatch", settings=INSERT_SETTINGS)
    count = lambda t: ch.query(f"SELECT count() FROM riskwatch.{t} FINAL").result_rows[0][0]  # noqa: E731
    assert (count("events_registry"), count("registry"), count("dead_letters")) == (3, 3, 1)
    ch.close()


def test_cli_refuses_missing_columns_naming_them(kafka, tmp_path):
    p = write_csv(tmp_path / "c.csv", ["工单编号", "来电时间"], [["GD1", "2026-11-27"]])
    r = _cli("import", "complaints", str(p))
    assert r.exit_code == 2 and "缺少必需的列" in r.output and "诉求内容" in r.output and "问题分类" in r.output


def test_queued_and_resolved_items_are_stored(tmp_path):
    from datetime import datetime

    from schemas.events import LOCAL_TZ
    from sinks.clickhouse import INSERT_SETTINGS, make_client
    from sinks.migrations import migrate
    from sinks.rows import COLUMNS, match_alias_row, match_queue_row

    rec = Recorder()
    _run(write_xlsx(tmp_path / "q.xlsx", COMPLAINT_HEADERS, COMPLAINT_ROWS[3:]), "complaints",
         matcher=registry_matcher(), sender=rec)  # fmt: skip
    q = MatchQueueItem.model_validate_json(rec.sent[0][2])
    done = q.model_copy(update=dict(status="resolved", version=q.version + 1, resolved_entity_id=DINER,
                                    resolved_by="taskforce", at=datetime.now(LOCAL_TZ)))  # fmt: skip
    ch = make_client(f"chdb://{tmp_path / 'ch'}")
    migrate(ch, "riskwatch")

    def ins(t: str, rows: list) -> None:
        ch.insert(t, rows, column_names=list(COLUMNS[t]), database="riskwatch", settings=INSERT_SETTINGS)

    ins("match_queue", [match_queue_row(q), match_queue_row(done)])
    ins("match_aliases", [match_alias_row(done)])
    rows = ch.query("SELECT status, resolved_entity_id, candidate_ids[1] FROM riskwatch.match_queue FINAL").result_rows
    assert rows == [("resolved", DINER, DINER)]
    aliases = ch.query("SELECT alias_key, entity_id FROM riskwatch.match_aliases FINAL").result_rows
    assert aliases == [("王记饭店|", DINER)]
    assert (
        Matcher.from_rows(
            [{"entity_id": DINER, "name": "老王饭店"}], [dict(alias_key=a, entity_id=e) for a, e in aliases]
        )
        .match("王记饭店")
        .match.method.value
        == "alias"
    )  # noqa: E501
    ch.close()
    assert orjson.loads(q.event)["text"].startswith("王记饭店")


def test_through_the_worker_reimport_stores_once_and_the_queue_fills(pipeline, tmp_path):
    """The real worker: the registry imported, the matcher loaded from it through the worker's /query,
    complaints imported twice — stored once each, matched ones with their method, one in match_queue."""
    from edge.imports.run import KafkaSender
    from edge.matching import load_matcher

    p, s = pipeline, pipeline.settings
    p.start_worker()
    sender = KafkaSender(s)
    reg = write_xlsx(tmp_path / "名录库.xlsx", REGISTRY_HEADERS, REGISTRY_ROWS)
    run_import(reg.read_bytes(), reg.name, "registry", catalog=CAT, matcher=Matcher([]), source=SRC, sender=sender,
               settings=s)  # fmt: skip
    q = p.worker.query
    wait_for(lambda: (q("SELECT count() AS n FROM riskwatch.registry FINAL") or [{}])[0].get("n") == 3, 120, "registry")
    m = load_matcher(s)
    assert len(m.entries) == 3
    comp = write_xlsx(tmp_path / "12345.xlsx", COMPLAINT_HEADERS, COMPLAINT_ROWS)
    for _ in range(2):
        rep = run_import(comp.read_bytes(), comp.name, "complaints", catalog=CAT, matcher=m, source=SRC,
                         sender=sender, settings=s)  # fmt: skip
        assert (rep.ready, len(rep.queued)) == (3, 1)
    sender.close()
    p.wait_consumed(topics=["events.complaint", "events.unmatched"])

    def stored():
        rows = q("SELECT entity_id, match_method FROM riskwatch.events_complaint FINAL ORDER BY event_id")
        queue = q("SELECT queue_id, name, status FROM riskwatch.match_queue FINAL")
        return (rows, queue) if rows and len(rows) >= 3 and queue else None

    rows, queue = wait_for(stored, 120, "complaints and the queue stored")
    assert sorted((r["entity_id"], r["match_method"]) for r in rows) == sorted(
        [(FOOD, "name_address"), (DINER, "name_address"), ("township:lianhua", "township")]
    )
    assert [(x["name"], x["status"]) for x in queue] == [("王记饭店", "pending")]
    assert q("SELECT count() AS n FROM riskwatch.events_complaint WHERE entity_id = 'unknown'")[0]["n"] == 0


def test_inspection_results_are_matched_and_go_to_the_departments_topic(tmp_path):
    from schemas.events import InspectionResult
    from tests.samples import INSPECTION_HEADERS, INSPECTION_ROWS

    rows = [list(r) for r in INSPECTION_ROWS] + [list(INSPECTION_ROWS[0]), list(INSPECTION_ROWS[0])]
    rows[2][0], rows[2][3] = "JC-2026-0003", FOOD[:-1] + ("0" if FOOD[-1] != "0" else "1")
    rows[3][0], rows[3][8] = "JC-2026-0004", "县烟草局"
    rec = Recorder()
    rep = _run(write_xlsx(tmp_path / "检查.xlsx", INSPECTION_HEADERS, rows), "inspections", matcher=registry_matcher(),
               sender=rec)  # fmt: skip
    assert [t for t, *_ in rec.sent] == ["events.inspection.amr"] * 2 + ["deadletter"] * 2
    a, b = (InspectionResult.model_validate_json(v) for _, _, v in rec.sent[:2])
    assert (a.entity_id, a.match.method.value, a.departments, a.outcome.value) == (
        FOOD,
        "credit_code",
        ["amr", "emergency"],
        "fail",
    )
    assert a.inspectors == ["张三", "李四"] and (a.violations[0].code, a.violations[0].severity.value) == (
        "F-07",
        "serious",
    )
    assert (b.entity_id, b.match.method.value, b.violations) == (DINER, "licence", [])
    assert b.inspection_id.startswith("imp-")  # a Chinese 检查编号 becomes a stable ASCII id
    assert [r.row for r in rep.refused] == [4, 5] and "校验位错误" in rep.refused[0].reason
    assert rep.refused[1].reason == "检查部门「县烟草局」不是目录中的部门"


def test_cli_says_when_the_registry_cannot_be_read(broker, monkeypatch, tmp_path):
    from tests.conftest import free_port

    s = broker.model_copy(update=dict(web_port=free_port(), clickhouse_url=f"chdb://{tmp_path / 'ch'}"))
    for k, v in settings_env(s).items():
        monkeypatch.setenv(k, v)
    p = write_csv(tmp_path / "c.csv", COMPLAINT_HEADERS, COMPLAINT_ROWS)
    r = _cli("import", "complaints", str(p))
    assert r.exit_code == 3 and "名录库读取失败" in r.output and "worker" in r.output

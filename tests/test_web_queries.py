"""The workbench's SQL on the real ClickHouse engine (embedded chDB), on hand-made rows whose
answers are known: the 督促反馈 response-time table, the inbox scope and order, the public
spot-check results. Every query also passes the read-only gate of `riskwatch query`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.binding import finalize_query

from schemas.events import Alert
from schemas.vocabulary import Level
from sinks.clickhouse import INSERT_SETTINGS, make_client
from sinks.migrations import migrate
from sinks.query import run_read_query
from sinks.rows import COLUMNS, alert_history_row, alert_row
from web.routes import inbox, public, taskforce, tasks

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=2)


def _alert(
    aid: str, status: str, level: str = "orange", depts=("amr", "emergency"), ack_due=T0 + timedelta(minutes=20)
) -> tuple:
    return alert_row(
        Alert(
            alert_id=aid,
            revision=1,
            fingerprint=f"E|1|{aid}",
            entity_id=f"E-{aid}",
            entity_name="鑫源食品",
            township="舞泉镇",
            item_id=1,
            item_name="食品生产企业综合监管",
            rule="rule.sensor",
            level=Level(level),
            level_zh=Level(level).zh,
            status=status,
            score=80,
            title="冷链温度超过8℃上限",
            message="m",
            lead_department=depts[0],
            departments=list(depts),
            first_seen=T0,
            last_seen=T0,
            updated_at=T0,
            source_event_id="e",
            ack_due=ack_due,
            dispose_due=T0 + timedelta(days=3),
        )
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    c = make_client(f"chdb://{tmp_path_factory.mktemp('webq') / 'ch'}")
    migrate(c, "riskwatch")
    m = lambda x: T0 + timedelta(minutes=x)  # noqa: E731
    c.insert(
        "alerts",
        [
            _alert("A1", "resolved"),
            _alert("A2", "firing", "red"),
            _alert("A3", "firing", "blue", depts=("police",)),
            _alert("A4", "firing", depts=("agri",)),
        ],
        column_names=list(COLUMNS["alerts"]),
        database="riskwatch",
        settings=INSERT_SETTINGS,
    )
    h = [alert_history_row(a, T0, "pending", "firing", "detector", seq=1, kind="status") for a in ("A1", "A2", "A3")]
    h += [
        alert_history_row(
            "A1", m(10), "firing", "firing", "amr/张三", "acknowledged(签收) 已安排", seq=2, kind="feedback"
        ),
        alert_history_row(
            "A1", m(30), "acknowledged", "acknowledged", "emergency/赵六", "acknowledged(签收)", seq=3, kind="feedback"
        ),
        alert_history_row(
            "A1", m(120), "acknowledged", "acknowledged", "amr", "disposed(处置完毕) 已整改", seq=4, kind="feedback"
        ),
        alert_history_row(
            "A2",
            m(40),
            "firing",
            "firing",
            "emergency/赵六",
            "not_ours(非本部门职责) 不属于本部门",
            seq=2,
            kind="feedback",
        ),
        # A4: amr refused, the office decided (改派 to agri): no longer waiting for the office
        alert_history_row(
            "A4", m(40), "firing", "firing", "amr/张三", "not_ours(非本部门职责) 种植环节", seq=1, kind="feedback"
        ),
        alert_history_row(
            "A4",
            m(50),
            "firing",
            "firing",
            "taskforce/王五",
            "reassign(专班改派) → agri:属农业",
            seq=2,
            kind="feedback",
        ),
    ]
    c.insert(
        "alert_history", h, column_names=list(COLUMNS["alert_history"]), database="riskwatch", settings=INSERT_SETTINGS
    )
    yield c
    c.close()


def _q(client, sql: str, **params) -> list[dict]:
    cols, rows = run_read_query(client, finalize_query(sql.replace("{db}", "riskwatch"), params or None))
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_response_times_per_department(client):
    rows = {r["dept"]: r for r in _q(client, taskforce.RESPONSE_SQL, days=30)}
    amr, em = rows["amr"], rows["emergency"]
    assert (amr["alerts"], amr["acked"], amr["ack_p50_min"], amr["disposed"], amr["disp_p50_h"]) == (2, 1, 10.0, 1, 2.0)
    assert amr["overdue_rate"] == 0.5  # A1 in time (10 < 20 min), A2 never and past its deadline
    assert (em["acked"], em["ack_p50_min"], em["overdue_rate"]) == (1, 30.0, 1.0)  # late on A1, never on A2
    assert rows["police"]["alerts"] == 1 and rows["police"]["acked"] == 0


def test_inbox_scope_and_order(client):
    sql = inbox.INBOX_SQL.replace("{where}", inbox.RECEIVES)
    assert [r["alert_id"] for r in _q(client, sql, dept="amr", limit=50)] == ["A2", "A1"]  # open first
    assert [r["alert_id"] for r in _q(client, sql, dept="police", limit=50)] == ["A3"]
    counts = _q(
        client,
        inbox.COUNTS_SQL.replace("{where}", inbox.RECEIVES).replace("{mine}", "has(departments, %(dept)s)"),
        dept="amr",
    )[0]
    assert (counts["open"], counts["unacked"], counts["total"]) == (1, 1, 2)
    by_dept = {r["dept"]: r for r in _q(client, taskforce.OPEN_SQL)}
    assert by_dept["amr"]["open"] == 1 and "A1" not in str(by_dept)


def test_other_pages_queries_run(client):
    assert _q(client, tasks.PLANS_SQL.replace("{where}", "1")) == []
    assert _q(client, tasks.TASKS_SQL.replace("{where}", "1")) == []
    assert _q(client, public.SPOT_SQL) == []
    assert _q(client, taskforce.UNASSIGNED_SQL, kinds=["catering"]) == []
    rows = _q(client, taskforce.NOT_OURS_SQL, days=30)
    assert [(r["alert_id"], r["refused_by"]) for r in rows] == [("A2", ["emergency"])]

"""Notices that reach a person (streams/engine/notices.py): deadlines in working hours, delivery per
recipient, 认领 / 有异议 / 督导单 answers with identity from the topic, urging and escalation, the
hash chain, and the rows in ClickHouse (chDB); then the running worker end to end."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from schemas.audit import chain_hash, chain_row
from schemas.events import LOCAL_TZ
from sinks import rows as R
from sinks.clickhouse import make_client
from sinks.migrations import migrate
from streams.engine import notices as N
from streams.runtime import topics as T

RULES = N.NoticeRules.load()
FRI_16 = datetime(2026, 12, 4, 16, 0, tzinfo=LOCAL_TZ)


def notice(**kw) -> dict:
    return {
        "kind": "dual_notification",
        "entity_id": "E1",
        "departments": ["amr", "health"],
        "text": "新登记主体 鑫源食品,联系电话13812345678",
        "at": FRI_16.isoformat(),
        **kw,
    }


def answer(row: N.NoticeRow, action: str, comment: str = "", event_id: str = "w1", **kw) -> N.NoticeAnswer:
    return N.NoticeAnswer(
        event_id=event_id,
        entity_id=row.entity_id or "E1",
        occurred_at=FRI_16 + timedelta(hours=1),
        source="workbench",
        notice_id=row.notice_id,
        action=action,
        comment=comment,
        actor="li",
        **kw,
    )


def verify(history: list[N.HistoryRow]) -> bool:
    prev = ""
    for h in history:
        ms = int(round(h.at.timestamp() * 1000))
        key = f"{h.notice_id}/{h.department}"
        row = chain_row(key, h.seq, h.entity_id, ms, h.kind, h.from_status, h.to_status, h.actor, h.comment)
        if h.prev_hash != prev or chain_hash(prev, row) != h.hash:
            return False
        prev = h.hash
    return True


def test_working_hours_skip_nights_and_weekends():
    assert RULES.add_working_hours(FRI_16, 1) == FRI_16 + timedelta(hours=1)
    assert RULES.add_working_hours(FRI_16, 2).isoformat() == "2026-12-07T10:00:00+08:00"  # Monday
    night = datetime(2026, 12, 7, 22, 0, tzinfo=LOCAL_TZ)
    assert RULES.add_working_hours(night, 1).isoformat() == "2026-12-08T10:00:00+08:00"
    assert RULES.deadline("township_surge", FRI_16).isoformat() == "2026-12-07T12:00:00+08:00"


def test_rules_are_checked(tmp_path):
    bad = tmp_path / "n.yaml"
    bad.write_text(
        "working_day: {start: 9, end: 17, weekdays: [1]}\nanswer_hours: {nonsense: 3}\n"
        "urge_every_hours: 4\nescalate_after: 2\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="nonsense"):
        N.NoticeRules.load(bad)


def test_a_notice_is_delivered_to_each_department_masked_with_one_id():
    rows = N.deliver(notice(), RULES)
    assert [r.department for r, _ in rows] == ["amr", "health"]
    assert len({r.notice_id for r, _ in rows}) == 1 and rows[0][0].notice_id == N.notice_id_of(notice())
    assert "13812345678" not in rows[0][0].text and rows[0][1].comment == rows[0][0].text
    assert all(r.status == "delivered" and r.deadline.isoformat() == "2026-12-08T16:00:00+08:00" for r, _ in rows)
    d = orjson.loads(N.delivery(*rows[0]).dumps())
    assert d["notification"] == "notice" and d["department"] == "amr" and d["deadline"].startswith("2026-12-08")


def test_confirm_and_dispute_with_identity_from_the_topic():
    (amr, h1), (health, _) = N.deliver(notice(), RULES)
    ok = answer(amr, "confirm")
    assert N.refuse(None, "police", ok) and "not delivered to department 'police'" in N.refuse(None, "police", ok)
    assert N.refuse(amr, "amr", answer(amr, "answer", "做了")).endswith("takes confirm or dispute, not answer")
    confirmed, h2 = N.apply(amr, "amr", ok)
    assert confirmed.status == "confirmed" and confirmed.answered_by == "amr/li" and confirmed.next_urge_at is None
    assert verify([h1, h2])
    assert N.refuse(confirmed, "amr", answer(amr, "dispute", "不是", event_id="w2")).endswith("(confirmed)")
    assert N.refuse(confirmed, "amr", ok) is None  # the same event again: a redelivery, skipped by the runtime
    with pytest.raises(ValueError, match="needs a comment"):
        answer(health, "dispute")
    disputed, _ = N.apply(health, "health", answer(health, "dispute", "非本部门监管对象,电话13812345678"))
    assert disputed.status == "disputed" and "13812345678" not in disputed.answer


def test_unanswered_notices_are_urged_then_escalated_on_working_hours():
    (row, h1), _ = N.deliver(notice(), RULES)
    assert N.urge(row, row.deadline - timedelta(minutes=1), RULES) is None
    r1, h2 = N.urge(row, row.deadline, RULES)
    assert (r1.status, r1.urged, h2.comment) == ("urged", 1, "第1次督促:双告知逾期未认领")
    assert N.urge(r1, row.deadline + timedelta(hours=1), RULES) is None  # next one urge_every_hours later
    r2, h3 = N.urge(r1, r1.next_urge_at, RULES)
    r3, h4 = N.urge(r2, r2.next_urge_at, RULES)
    assert (r2.status, r3.status, r3.urged) == ("urged", "escalated", 3)
    assert N.delivery(r3, h4).notification == "escalate" and verify([h1, h2, h3, h4])
    done, _ = N.apply(r3, "amr", answer(r3, "confirm"))  # still open when escalated: 认领 closes it
    assert N.urge(done, done.created_at + timedelta(days=30), RULES) is None


def test_only_the_office_sends_a_supervision_note_and_the_department_answers_it():
    note = N.NoticeAnswer(
        event_id="s1",
        entity_id="E1",
        occurred_at=FRI_16,
        source="workbench",
        notice_id="S-1",
        action="send",
        comment="请说明预警 A1 逾期未处置的原因",
        department="amr",
        subject="A1",
        actor="wang",
    )
    assert N.refuse(None, "amr", note) == "only the task-force office (taskforce) sends 督导单, not 'amr'"
    assert N.refuse(None, "taskforce", note) is None
    ((row, _),) = N.deliver(N.supervision_notice(note, "taskforce", RULES), RULES)
    assert (row.kind, row.department, row.subject, row.sender) == ("supervision", "amr", "A1", "taskforce/wang")
    assert row.deadline == RULES.add_working_hours(FRI_16, 24)
    assert N.refuse(row, "amr", answer(row, "confirm")).endswith("takes answer, not confirm")
    done, h = N.apply(row, "amr", answer(row, "answer", "已于当日完成处置并补录反馈"))
    assert done.status == "answered" and h.kind == "answered"


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    c = make_client(f"chdb://{tmp_path_factory.mktemp('ch') / 'clickhouse'}")
    migrate(c, "riskwatch")
    yield c
    c.close()


def test_rows_round_trip_through_clickhouse(ch):
    (row, h1), _ = N.deliver(notice(), RULES)
    confirmed, h2 = N.apply(row, "amr", answer(row, "confirm"))
    for r in (row, confirmed, confirmed):  # a redelivery writes the same version again
        ch.insert("notices", [R.notice_row(r)], column_names=R.COLUMNS["notices"], database="riskwatch")
    for h in (h1, h2, h2):
        ch.insert("notice_history", [R.notice_history_row(h)], column_names=R.COLUMNS["notice_history"],
                  database="riskwatch")  # fmt: skip
    q = ch.query("SELECT * FROM riskwatch.notices FINAL WHERE notice_id = %(n)s", parameters={"n": row.notice_id})
    back = N.row_of(dict(zip(q.column_names, q.result_rows[0], strict=True)))
    assert back == confirmed
    hist = ch.query("SELECT * FROM riskwatch.notice_history FINAL ORDER BY seq")
    rows = [N.HistoryRow(**{k: v for k, v in zip(hist.column_names, r, strict=True)}) for r in hist.result_rows]
    assert [r.kind for r in rows] == ["delivered", "confirmed"] and verify(rows)


def test_topics_for_answers_and_deliveries():
    assert T.notice_topic("amr") == "events.notice.amr" and T.NOTICE_DELIVERY == "notices.delivery"


def test_the_bulletin_lists_supervision_notes_and_answers(ch):
    from reports import bulletin as B

    note = N.NoticeAnswer(
        event_id="s9", entity_id="amr", occurred_at=FRI_16, source="workbench", notice_id="S-9", action="send",
        comment="请说明预警逾期原因", department="amr", subject="A9", actor="wang",
    )  # fmt: skip
    ((row, h1),) = N.deliver(N.supervision_notice(note, "taskforce", RULES), RULES)
    done, h2 = N.apply(row, "amr", answer(row, "answer", "已完成处置"))
    ch.insert("notices", [R.notice_row(done)], column_names=R.COLUMNS["notices"], database="riskwatch")

    def query(sql: str):
        q = ch.query(sql)
        return q.column_names, q.result_rows

    start, end = FRI_16 - timedelta(days=3), FRI_16 + timedelta(days=4)
    notes = B.fetch_notes(query, start, end)
    assert [n["notice_id"] for n in notes] == ["S-9"] and B.fetch_notes(query, start, end, "police") == []
    b = B.summarize([], "week", start, end)
    b.notes = notes
    head, rows = B.tables(b)["notes"]
    assert rows[0][:3] == ["S-9", "县市场监管局", "A9"] and rows[0][6] == "已答复" and "已完成处置" in rows[0][7]
    assert "八、检查督导（督导单）" in B.render_html(b, {k: b"" for k in B.CHART_TITLES})


def test_the_deadline_timer_finds_open_notices_past_their_next_urging(ch):
    from streams.runtime.notice_agent import DUE_SQL, due_params

    (row, _), (other, _) = N.deliver(notice(entity_id="E-due"), RULES)
    done, _ = N.apply(other, "health", answer(other, "confirm"))
    ch.insert("notices", [R.notice_row(row), R.notice_row(done)], column_names=R.COLUMNS["notices"],
              database="riskwatch")  # fmt: skip

    def due(at: datetime) -> list[tuple[str, str]]:
        q = ch.query(DUE_SQL.format(db="riskwatch"), parameters=due_params(at))
        return [(r["notice_id"], r["department"]) for r in q.named_results() if r["entity_id"] == "E-due"]

    assert due(row.deadline - timedelta(minutes=1)) == []
    assert due(row.deadline + timedelta(minutes=1)) == [(row.notice_id, "amr")]

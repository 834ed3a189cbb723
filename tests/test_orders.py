"""整改 orders and 复查: an inspection with violations opens an order; 整改完成 asks for a 复查; a failed
复查 re-opens the order, escalates it and counts against the credit tier; a passed one closes it.
Engine-level tests (the Processor), plus one pipeline test with the real broker and ClickHouse engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from riskwatch.domain.county import load_county
from schemas.audit import chain_hash, chain_row
from schemas.events import DisposalFeedback, EntityEvent, InspectionResult, SensorReading, Violation
from sinks.rows import COLUMNS, order_row
from streams.engine import orders
from streams.engine.dispatch import Processor
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState
from tests import factories as F

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
DAY = 86400.0
_n = iter(range(10**6))


@pytest.fixture(scope="module")
def county():
    return load_county()


@pytest.fixture
def proc(county):
    return Processor.from_county(county, clock=lambda: 0.0)


def _where(topic: str = "events.inspection.amr"):
    return (topic, 0, next(_n))


def _registered(p: Processor) -> EntityState:
    st = EntityState()
    ev = EntityEvent(
        event_id=f"r{next(_n)}",
        entity_id="E1",
        occurred_at=T0,
        source="amr",
        action="registered",
        name="舞泉镇鑫源食品有限公司",
        kind="food_producer",
        township="舞泉镇",
    )
    p.process(ev, st, _where("events.registry"))
    return st


def _inspection(outcome: str, days: float, *, order_id: str = "", severity: str = "serious", violations=True):
    return InspectionResult(
        event_id=f"i{next(_n)}",
        entity_id="E1",
        occurred_at=T0 + timedelta(days=days),
        source="amr",
        inspection_id=f"I{next(_n)}",
        item_id=1,
        departments=["amr", "health"],
        outcome=outcome,
        order_id=order_id,
        violations=[Violation(code="cold_chain.temp", severity=severity, description="冷库温度超标")]
        + [Violation(code="hygiene.floor", severity="minor", description="地面不洁")]
        if violations
        else [],
    )


def _claim(order_id: str, days: float, dept: str = "amr") -> DisposalFeedback:
    return DisposalFeedback(
        event_id=f"f{next(_n)}",
        entity_id="E1",
        occurred_at=T0 + timedelta(days=days),
        source="web",
        alert_id=order_id,
        department=dept,
        status="rectified",
        comment="已更换冷库压缩机",
        attachment_sha256="a" * 64,
        user="amr-01",
    )


def test_an_inspection_with_violations_opens_an_order_with_deadlines_per_severity(proc):
    st = _registered(proc)
    out = proc.process(_inspection("pass_with_conditions", 0), st, _where())
    (o,) = st.orders.values()
    assert o.status == "issued" and o.department == "amr" and o.item_id == 1
    # serious: 15 days, minor: 30 (rectification.yaml); the order's deadline is the latest
    assert [round((i.due - T0.timestamp()) / DAY) for i in o.items] == [15, 30]
    assert o.items[0].action.startswith("冷库温度超标:整改冷链设施")
    assert [r["status"] for r in out.orders] == ["issued"]
    assert [(t["alert_id"], t["seq"], t["kind"]) for t in out.transitions if t["alert_id"] == o.order_id] == [
        (o.order_id, 1, "order")
    ]
    # a clean inspection or a pass opens none; a redelivered inspection opens no second order
    proc.process(_inspection("pass", 1, violations=False), st, _where())
    assert len(st.orders) == 1


def test_claim_then_failed_recheck_reopens_escalates_and_counts_then_pass_closes(proc):
    st = _registered(proc)
    proc.process(_inspection("fail", 0, severity="critical"), st, _where())
    (o,) = st.orders.values()
    tier_before = st.risk.tier(proc.cx.fusion)
    out = proc.process(_claim(o.order_id, 2), st, _where("events.feedback.amr"))
    assert out.rejected is None and o.status == "claimed" and o.evidence == "a" * 64
    # the 复查 task for the lead department, due recheck_days after the claim
    (task,) = [t for t in out.tasks if t.kind == "recheck"]
    assert task.department == "amr" and task.ref == o.order_id and task.due == T0 + timedelta(days=5)
    assert task.task_id in st.tasks
    # a second claim before the 复查 is refused (a dead letter), as is another department's
    assert "already claimed" in proc.process(_claim(o.order_id, 2.5), st, _where("events.feedback.amr")).rejected
    # 复查 fails: re-opened with a new deadline, escalated to the office, credit tier worse
    out = proc.process(_inspection("fail", 4, order_id=o.order_id), st, _where())
    assert o.status == "reopened" and o.failed == 1
    assert o.deadline == (T0 + timedelta(days=4 + 7)).timestamp()
    (n,) = [n for n in out.notices if n.kind == "escalate"]
    assert "taskforce" in n.departments and "复查不合格" in n.text
    assert task.task_id not in st.tasks  # the 复查 did the task
    assert st.risk.tier(proc.cx.fusion) >= tier_before and "rule.rectification.recheck_failed" in st.risk.signals
    assert len(st.orders) == 1  # the failed 复查 opens no second order
    # claimed again, then the 复查 passes: closed
    proc.process(_claim(o.order_id, 6), st, _where("events.feedback.amr"))
    out = proc.process(_inspection("pass", 7, order_id=o.order_id, violations=False), st, _where())
    assert o.status == "closed" and [r["status"] for r in out.orders] == ["closed"]
    # the order's audit chain: each row hashes the one before
    assert [h.status for h in o.history] == ["issued", "claimed", "reopened", "claimed", "closed"]
    # the closed order leaves the state after the close grace period
    proc.tick("E1", st, (T0 + timedelta(days=8)).timestamp())
    assert not st.orders


def test_a_recheck_of_an_unknown_order_or_by_another_department_is_refused(proc):
    st = _registered(proc)
    out = proc.process(_inspection("pass", 0, order_id="RO-nope", violations=False), st, _where())
    assert "unknown or closed rectification order" in out.rejected
    proc.process(_inspection("fail", 0), st, _where())
    (o,) = st.orders.values()
    out = proc.process(_claim(o.order_id, 1, dept="health"), st, _where("events.feedback.health"))
    assert "belongs to amr" in out.rejected


def test_the_deadline_asks_for_a_recheck_urges_then_escalates(proc):
    st = _registered(proc)
    proc.process(_inspection("pass_with_conditions", 0), st, _where())
    (o,) = st.orders.values()
    out = proc.tick("E1", st, o.deadline + 60)
    assert [n.kind for n in out.notices] == ["urge"] and out.notices[0].departments == ["amr"]
    assert [t.kind for t in out.tasks] == ["recheck"]  # no claim before the deadline: 复查 at the deadline
    out = proc.tick("E1", st, o.remind_due + 1)
    assert [(n.kind, n.departments) for n in out.notices] == [("escalate", ["taskforce"])]
    assert o.reminders == 2 and o.status == "issued"


def test_an_alert_whose_outcome_ordered_rectification_closes_only_when_its_orders_close(proc):
    st = _registered(proc)
    # a red sensor alert; the department disposes of it and its outcome orders rectification
    for i, v in enumerate((9.5, 9.6, 9.8)):
        ev = F.sensor("E1", v, at=T0 + timedelta(minutes=i))
        proc.process(SensorReading.model_validate(ev), st, _where("events.sensor"))
    (oa,) = st.alerts.values()
    out = Outcome()
    o = orders.open_order(
        proc.cx,
        st,
        out,
        entity_id="E1",
        alert_id=oa.alert_id,
        department="amr",
        items=[Violation(code="cold_chain", severity="serious", description="冷链失控")],
        reason="处置结果:属实,责令整改",
        at=T0.timestamp() + 3600,
    )
    assert orders.holds(st, oa.alert_id)
    oa.lc.status, oa.lc.resolved_at = "resolved", T0.timestamp() + 3600
    proc.tick("E1", st, T0.timestamp() + 5 * 3600)  # past the close grace: still held
    assert oa.fingerprint in st.alerts
    proc.process(_claim(o.order_id, 1), st, _where("events.feedback.amr"))
    proc.process(_inspection("pass", 2, order_id=o.order_id, violations=False), st, _where())
    proc.tick("E1", st, (T0 + timedelta(days=2, hours=2)).timestamp())
    assert oa.fingerprint not in st.alerts  # its order closed: the alert closes


def test_orders_survive_the_state_format_and_rows_match_the_table(proc):
    st = _registered(proc)
    out = proc.process(_inspection("fail", 0), st, _where())
    st2 = EntityState.loads(st.dumps())
    assert st2.orders == st.orders
    row = order_row(out.orders[0])
    assert len(row) == len(COLUMNS["rectification_orders"])
    # the chain row hashes from "" (an order's chain starts with it)
    (o,) = st.orders.values()
    (tr,) = [t for t in out.transitions if t["alert_id"] == o.order_id]
    assert tr["prev_hash"] == "" and tr["hash"] == o.chain
    at_ms = round(tr["at"].timestamp() * 1000)
    row = chain_row(o.order_id, 1, "E1", at_ms, "order", "", "issued", tr["actor"], tr["comment"])
    assert chain_hash("", row) == o.chain


# --- the running pipeline --------------------------------------------------------------------------
def _msgs(p, topic: str) -> list[dict]:
    return [orjson.loads(v) for _, v in p.read_topic(topic)]


def test_pipeline_order_recheck_fails_then_passes(pipeline):
    from riskwatch.tools.runner import wait_for

    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    p.send("events.registry", F.registered("E-ord", kind="food_producer"))
    p.flush()
    p.wait_consumed()
    insp = F.inspection("E-ord", outcome="pass_with_conditions", severity="serious")
    p.send("events.inspection.amr", insp)
    p.flush()
    rows = wait_for(
        lambda: w.query("SELECT order_id, status, department FROM riskwatch.rectification_orders FINAL"),
        60,
        "the order in ClickHouse",
    )
    oid = rows[0]["order_id"]
    assert rows == [{"order_id": oid, "status": "issued", "department": "amr"}]
    fb = F.feedback("E-ord", oid, "amr", "rectified")
    fb["occurred_at"] = (F.BASE + timedelta(hours=1)).isoformat()
    p.send("events.feedback.amr", fb)
    p.flush()
    p.wait_consumed()
    for outcome, at in (("fail", 2), ("pass", 3)):
        r = F.inspection("E-ord", outcome=outcome, at=F.BASE + timedelta(hours=at))
        r["order_id"] = oid
        if outcome == "pass":
            r["violations"] = []
        p.send("events.inspection.amr", r)
        p.flush()
        p.wait_consumed()
        if outcome == "fail":
            fb["event_id"] += "-2"
            fb["occurred_at"] = (F.BASE + timedelta(hours=2.5)).isoformat()
            p.send("events.feedback.amr", fb)
            p.flush()
            p.wait_consumed()
    wait_for(
        lambda: (
            w.query(f"SELECT status FROM riskwatch.rectification_orders FINAL WHERE order_id = '{oid}'")
            == [{"status": "closed"}]
        ),
        60,
        "the closed order",
    )
    hist = wait_for(  # the history arrives through alerts.events and the sink agent, after the order's row
        lambda: (
            (
                h := w.query(
                    "SELECT seq, to_status, prev_hash, hash FROM riskwatch.alert_history "
                    f"WHERE alert_id = '{oid}' ORDER BY seq"
                )
            )
            and h[-1]["to_status"] == "closed"
            and h
        ),
        60,
        "the order's history to reach closed",
    )
    assert [h["to_status"] for h in hist][-5:] == ["issued", "claimed", "reopened", "claimed", "closed"]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(hist, hist[1:], strict=False))
    assert any(n["kind"] == "escalate" and "复查不合格" in n["text"] for n in _msgs(p, "notices"))
    tasks = w.query(f"SELECT count() AS n FROM riskwatch.events_task FINAL WHERE kind = 'recheck' AND ref = '{oid}'")
    assert tasks == [{"n": 2}]  # one 复查 task per claim


def test_a_confirmed_outcome_with_rectify_opens_the_order_that_holds_the_alert(proc):
    from schemas.events import DisposalOutcome

    st = _registered(proc)
    for i, v in enumerate((9.5, 9.6, 9.8)):
        proc.process(SensorReading.model_validate(F.sensor("E1", v, at=T0 + timedelta(minutes=i))), st, _where("s"))
    (oa,) = st.alerts.values()
    for status in ("acknowledged", "disposed"):
        fb = DisposalFeedback(
            event_id=f"f{next(_n)}", entity_id="E1", occurred_at=T0 + timedelta(minutes=30), source="web",
            alert_id=oa.alert_id, department=oa.departments[0], status=status, result="已查实",
            outcome=DisposalOutcome(verdict="confirmed", measures=["rectify"], rectify_note="更换冷库温控")
            if status == "disposed" else None,
        )  # fmt: skip
        out = proc.process(fb, st, _where("events.feedback.amr"))
        assert out.rejected is None
    (o,) = st.orders.values()
    assert o.alert_id == oa.alert_id and o.items[0].description == "更换冷库温控" and orders.holds(st, oa.alert_id)
    proc.tick("E1", st, (T0 + timedelta(days=1)).timestamp())
    assert oa.fingerprint in st.alerts  # resolved, held open by its order

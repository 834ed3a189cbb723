"""Disposal outcomes (issue #22 items 1–2): the contract, the handler (audit text, refusal, learning), the rows,
the precision table and its interval, the reason list as data, and the workbench form's parsing."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from detectors.sensor import SensorAnomaly
from riskwatch.domain.county import load_county
from riskwatch.domain.outcomes import load_reasons, load_review
from schemas.events import Complaint, DisposalFeedback, DisposalOutcome, EntityEvent, Measure, Verdict
from schemas.vocabulary import FALSE_ALARM_REASON_ZH, MEASURE_ZH, VERDICT_ZH
from sinks.precision import table, wilson
from sinks.rows import COLUMNS, feedback_row
from streams.engine.dispatch import Processor
from streams.engine.handlers.feedback import THRESHOLD_STEP, learn_false_alarm, outcome_text
from streams.engine.state import EntityState
from tests import factories as f

COUNTY = load_county()


def fb(alert_id: str, status: str = "disposed", outcome: dict | None = None, dept: str = "amr") -> DisposalFeedback:
    d = f.feedback("E1", alert_id, dept, status)
    d["occurred_at"] = (f.BASE + timedelta(minutes=30)).isoformat()
    return DisposalFeedback.model_validate({**d, "result": "核查完毕", "outcome": outcome})


def firing_alert() -> tuple[Processor, EntityState, str]:
    proc = Processor.from_county(COUNTY, clock=lambda: f.BASE.timestamp() + 1800)
    st = EntityState()
    proc.process(EntityEvent.model_validate(f.registered("E1")), st, ("events.registry", 0, 0))
    out = proc.process(Complaint.model_validate(f.complaint("E1")), st, ("events.complaint", 0, 0))
    [a] = [x for x in out.alerts if x.status == "firing"][:1]
    return proc, st, a.alert_id


# --- the contract ---------------------------------------------------------------------------------------------
def test_the_outcome_contract() -> None:
    ok = DisposalOutcome(verdict="confirmed", measures=["rectify", "case", "fine"], case_number="A-1", fine_yuan=500)
    assert ok.measures == [Measure.rectify, Measure.case, Measure.fine]
    for bad in (
        {"verdict": "false_alarm"},  # no reason
        {"verdict": "confirmed", "reason": "duplicate"},  # a reason on a confirmed one
        {"verdict": "not_confirmed", "measures": ["rectify"]},  # measures only when confirmed
        {"verdict": "confirmed", "measures": ["case"]},  # case without its number
        {"verdict": "confirmed", "measures": ["fine"], "fine_yuan": -3},
        {"verdict": "confirmed", "measures": ["transfer"]},  # to whom?
        {"verdict": "confirmed", "measures": ["rectify", "rectify"]},
    ):
        with pytest.raises(ValidationError):
            DisposalOutcome.model_validate(bad)
    with pytest.raises(ValidationError, match="only for status=disposed"):
        fb("A1", "acknowledged", {"verdict": "not_confirmed"})
    assert fb("A1", "disposed", None).outcome is None  # an old message: accepted as outcome unknown


def test_one_vocabulary_and_the_reason_list_agree() -> None:
    assert set(VERDICT_ZH) == {v.value for v in Verdict} | {"unknown"}
    assert set(MEASURE_ZH) == {m.value for m in Measure}
    assert set(load_reasons()) == set(FALSE_ALARM_REASON_ZH)
    assert VERDICT_ZH["false_alarm"] == "误报" and MEASURE_ZH["rectify"] == "责令整改"
    r = load_review()
    assert 0 < r.false_alarm_share < 1 and r.min_labelled >= 1


# --- the handler -----------------------------------------------------------------------------------------------
def test_a_confirmed_outcome_is_in_the_audit_chain_and_resolves_the_alert() -> None:
    proc, st, alert_id = firing_alert()
    o = {"verdict": "confirmed", "measures": ["rectify", "fine"], "rectify_note": "清洁后厨", "fine_yuan": 5000}
    out = proc.process(fb(alert_id, outcome=o), st, ("events.feedback", 0, 1))
    assert out.rejected is None
    comments = [t["comment"] for t in out.transitions if t["kind"] == "feedback"]
    assert any(
        c.startswith("disposed(已处置) 【核查结果】属实;措施:责令整改(清洁后厨)、罚款 5000 元") for c in comments
    )
    assert out.alerts[-1].status == "resolved"


def test_an_unknown_false_alarm_reason_is_refused() -> None:
    proc, st, alert_id = firing_alert()
    out = proc.process(
        fb(alert_id, outcome={"verdict": "false_alarm", "reason": "aliens"}), st, ("events.feedback", 0, 1)
    )
    assert out.rejected and "aliens" in out.rejected and not out.alerts


def test_a_false_alarm_raises_the_detector_threshold_of_its_device_and_channel() -> None:
    st = EntityState()
    st.sensors["d1:cold_chain_temp"], st.sensors["d2:cold_chain_temp"] = SensorAnomaly(), SensorAnomaly()
    st.sensors["d1:storage_temp"] = SensorAnomaly()
    before = st.sensors["d1:cold_chain_temp"].threshold
    oa = SimpleNamespace(rule="model.sensor.cold_chain_temp", evidence=SimpleNamespace(key="d1:cold_chain_temp"))
    assert learn_false_alarm(st, oa) == ["d1:cold_chain_temp"]  # type: ignore[arg-type]
    assert st.sensors["d1:cold_chain_temp"].threshold == pytest.approx(before + THRESHOLD_STEP)
    assert st.sensors["d2:cold_chain_temp"].threshold == before == st.sensors["d1:storage_temp"].threshold
    # the learnt threshold survives the state's round trip (a non-default configuration is stored)
    again = EntityState.loads(st.dumps())
    assert again.sensors["d1:cold_chain_temp"].threshold == pytest.approx(before + THRESHOLD_STEP)
    # without a device in the evidence every device of the channel learns; rule alerts teach nothing
    oa2 = SimpleNamespace(rule="model.sensor.cold_chain_temp", evidence=None)
    assert sorted(learn_false_alarm(st, oa2)) == ["d1:cold_chain_temp", "d2:cold_chain_temp"]  # type: ignore[arg-type]
    assert learn_false_alarm(st, SimpleNamespace(rule="rule.sensor.cold_chain_temp", evidence=None)) == []  # type: ignore[arg-type]


def test_a_false_alarm_on_the_fused_risk_discounts_the_signals_that_raised_it() -> None:
    from riskwatch.domain.county import load_county
    from streams.engine.context import Context

    cx = Context.of(load_county())
    st, t = EntityState(), 1_767_225_600.0
    for i in range(6):
        st.risk.learn_one(t + i, "anomaly.cold_chain_temp", 0.9, cx.fusion)
    before, _ = st.risk.score_one(t + 10, cx.fusion)
    oa = SimpleNamespace(rule="model.risk", item_id=None, last_seen=t + 10)
    assert learn_false_alarm(st, oa, cx, t + 10) == ["risk.anomaly"]  # type: ignore[arg-type]
    after, _ = st.risk.score_one(t + 10, cx.fusion)
    assert after < before and st.risk.discount == {"anomaly": 0.7}
    again = EntityState.loads(st.dumps())  # learnt for this entity, and kept with its state
    assert again.risk.discount == {"anomaly": 0.7} and again.risk.score_one(t + 10, cx.fusion)[0] == after
    assert EntityState().risk.score_one(t, cx.fusion)[0] == 0.0  # other entities keep the county's weights


def test_outcome_texts() -> None:
    assert outcome_text(DisposalOutcome(verdict="not_confirmed")) == "【核查结果】不属实"
    o = DisposalOutcome(
        verdict="confirmed", measures=["case", "transfer", "suspend"], case_number="X1", transfer_to="县公安局"
    )
    assert outcome_text(o) == "【核查结果】属实;措施:立案(案号 X1)、移送至县公安局、停业整顿"


# --- rows and precision ----------------------------------------------------------------------------------------
def test_the_feedback_row_carries_the_outcome_columns() -> None:
    row = dict(
        zip(
            COLUMNS["events_feedback"],
            feedback_row(fb("A1", outcome={"verdict": "false_alarm", "reason": "duplicate"})),
            strict=True,
        )
    )
    assert (row["verdict"], row["false_reason"], row["measures"], row["fine_yuan"]) == (
        "false_alarm",
        "duplicate",
        [],
        None,
    )
    old = dict(zip(COLUMNS["events_feedback"], feedback_row(fb("A1", outcome=None)), strict=True))
    assert old["verdict"] == "unknown"
    ack = dict(zip(COLUMNS["events_feedback"], feedback_row(fb("A1", "acknowledged")), strict=True))
    assert ack["verdict"] == ""


def test_wilson_interval() -> None:
    lo, hi = wilson(0, 5)
    assert lo == 0.0 and 0.4 < hi < 0.5  # not empty at k = 0
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson(3, 0) == (0.0, 1.0)


def test_the_precision_table_and_the_review_flag() -> None:
    def row(i: int, rule: str, verdict: str, dept: str = "amr") -> dict:
        return {
            "alert_id": f"a{i}",
            "rule": rule,
            "item_id": 1,
            "item_name": "食品生产",
            "dept": dept,
            "verdict": verdict,
            "reason": "sensor_fault" if verdict == "false_alarm" else "",
            "title": "t",
            "entity_name": "e",
        }

    rows = [row(i, "model.sensor.cold_chain_temp", "false_alarm") for i in range(4)]
    rows += [row(10 + i, "model.sensor.storage_temp", "confirmed") for i in range(2)]
    rows += [row(20, "rule.complaint.food_poisoning", "confirmed"), row(21, "rule.complaint.food_poisoning", "")]
    by_rule = {g.key: g for g in table(rows, "rule")}
    det = {g.key: g for g in table(rows, "detector")}
    assert det["model.sensor"].alerts == 6 and det["model.sensor"].false == 4 and det["model.sensor"].confirmed == 2
    assert (
        by_rule["rule.complaint.food_poisoning"].unknown == 1
        and by_rule["rule.complaint.food_poisoning"].precision == 1.0
    )
    review = load_review()
    assert review.flagged(det["model.sensor"].labelled, det["model.sensor"].false)
    assert [a["alert_id"] for a in det["model.sensor"].false_alerts] == ["a0", "a1", "a2", "a3"]
    assert not review.flagged(by_rule["model.sensor.cold_chain_temp"].labelled, 4)  # 4 < min_labelled


# --- the queries on the real engine (embedded chDB) ------------------------------------------------------------
def test_the_precision_and_outcome_queries_on_chdb(tmp_path) -> None:
    from clickhouse_connect.driver.binding import finalize_query

    from sinks.clickhouse import INSERT_SETTINGS, make_client
    from sinks.migrations import migrate
    from sinks.precision import ALERT_OUTCOMES_SQL, OUTCOMES_OF_ALERT_SQL, OUTCOMES_OF_ENTITY_SQL
    from sinks.query import run_read_query
    from sinks.rows import alert_history_row
    from tests.test_web_queries import T0, _alert

    c = make_client(f"chdb://{tmp_path / 'ch'}")
    migrate(c, "riskwatch")
    c.insert("alerts", [_alert(a, "resolved") for a in ("A1", "A2", "A3")], column_names=list(COLUMNS["alerts"]),
             database="riskwatch", settings=INSERT_SETTINGS)  # fmt: skip
    h = [alert_history_row(a, T0, "pending", "firing", "detector", seq=1, kind="status") for a in ("A1", "A2", "A3")]
    c.insert("alert_history", h, column_names=list(COLUMNS["alert_history"]), database="riskwatch",
             settings=INSERT_SETTINGS)  # fmt: skip

    def feedback(aid: str, outcome: dict | None, minutes: int) -> tuple:
        d = {**f.feedback(f"E-{aid}", aid, "amr", "disposed"), "outcome": outcome}
        d["occurred_at"] = (T0 + timedelta(minutes=minutes)).isoformat()
        return feedback_row(DisposalFeedback.model_validate(d))

    rows = [
        feedback("A1", {"verdict": "not_confirmed"}, 10),
        feedback("A1", {"verdict": "confirmed", "measures": ["fine"], "fine_yuan": 800}, 20),  # the latest wins
        feedback("A2", {"verdict": "false_alarm", "reason": "sensor_fault"}, 10),
        feedback("A3", None, 10),  # an old message: unknown
    ]
    c.insert("events_feedback", rows, column_names=list(COLUMNS["events_feedback"]), database="riskwatch",
             settings=INSERT_SETTINGS)  # fmt: skip

    def q(sql: str, **p) -> list[dict]:
        cols, out = run_read_query(c, finalize_query(sql.replace("{db}", "riskwatch"), p))
        return [dict(zip(cols, r, strict=True)) for r in out]

    got = {r["alert_id"]: (r["verdict"], r["reason"]) for r in q(ALERT_OUTCOMES_SQL, days=30)}
    assert got == {"A1": ("confirmed", ""), "A2": ("false_alarm", "sensor_fault"), "A3": ("", "")}
    [g] = table(q(ALERT_OUTCOMES_SQL, days=30), "rule")
    assert (g.alerts, g.confirmed, g.false, g.unknown) == (3, 1, 1, 1)
    one = q(OUTCOMES_OF_ALERT_SQL, alert_id="A1")
    assert [o["verdict"] for o in one] == ["confirmed", "not_confirmed"] and one[0]["fine_yuan"] == 800
    assert [o["verdict"] for o in q(OUTCOMES_OF_ENTITY_SQL, entity_id="E-A2")] == ["false_alarm"]
    c.close()

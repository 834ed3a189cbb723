"""Risk fusion (detectors/fusion.py) and its wiring in the processor: levels, hysteresis, decay,
explanations, credit tier, model.risk alerts, the inspection-outcome model, bounded state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from detectors.fusion import EntityRisk, load_fusion
from detectors.rules import load_rules
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import DATA_DIR
from schemas.events import Complaint, EntityEvent, InspectionResult, SensorReading, VideoDetection
from streams.engine.dispatch import Processor
from streams.engine.state import EntityState

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
CFG = load_fusion(DATA_DIR / "fusion.yaml")


def test_hysteresis_enter_and_exit():
    assert CFG.level_for(71, "") == "orange"
    assert CFG.level_for(65, "orange") == "orange"  # above orange's exit: stays
    assert CFG.level_for(59, "orange") == "yellow"  # below exit: one level down
    assert CFG.level_for(65, "yellow") == "yellow"  # not enough to enter orange again
    assert CFG.level_for(10, "red") == ""
    assert CFG.level_for(99, "") == "red"


def test_signals_decay_with_their_half_life_and_are_pruned():
    r = EntityRisk()
    r.learn_one(0.0, "rate.complaint", 1.0, CFG)
    s0, _ = r.score_one(0.0, CFG, 7)
    s12, _ = r.score_one(12 * 3600.0, CFG, 7)  # rate half-life 12 h
    assert s0 == pytest.approx(100.0) and s12 == pytest.approx(50.0, abs=0.1)
    r.score_one(30 * 86400.0, CFG, 7)
    assert r.signals == {}


def test_noisy_or_explanation_and_item_weights():
    r = EntityRisk()
    r.learn_one(0.0, "rate.complaint", 0.5, CFG)
    r.learn_one(0.0, "rule.video.smoking", 0.6, CFG)
    s7, top = r.score_one(0.0, CFG, item_id=7)  # 医疗美容: complaints weigh 1.0
    s5, _ = r.score_one(0.0, CFG, item_id=5)  # 工业产品: 0.8
    assert s7 == pytest.approx(100 * (1 - 0.5 * 0.4)) and s5 < s7
    assert [c.signal for c in top] == ["rule.video.smoking", "rate.complaint"]
    assert "投诉量激增" in top[1].detail and "贡献50分" in top[1].detail


def test_credit_tier_follows_the_decayed_peak():
    r = EntityRisk()
    assert r.tier(CFG) == "A"
    r.learn_one(0.0, "rule.x", 0.8, CFG)
    r.update(0.0, CFG)
    assert r.tier(CFG, 0.0) == "C"
    assert r.tier(CFG, 60 * 86400.0) == "B"  # half-life 90 days: 80 → 50
    assert r.tier(CFG, 365 * 86400.0) == "A"


def test_invalid_fusion_file_names_the_field(tmp_path):
    raw = yaml.safe_load((DATA_DIR / "fusion.yaml").read_text(encoding="utf-8"))
    raw["levels"]["orange"] = {"enter": 60, "exit": 70}
    raw["items"][3] = {"vibes": 1.0}
    p = tmp_path / "fusion.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_fusion(p)
    assert "levels.orange" in str(e.value) and "exit" in str(e.value)


# --- in the processor ------------------------------------------------------------------------------
def _proc() -> Processor:
    return Processor(load_catalog(), load_rules(DATA_DIR / "rules.yaml"), clock=lambda: T0.timestamp())


_n = [0]


def _ev(model, entity="E1", at=T0, **kw):
    _n[0] += 1
    return model(event_id=f"e{_n[0]}", entity_id=entity, occurred_at=at, source="test", **kw)


def _register(p, st, entity="E1", kind="catering", at=T0):
    p.process(
        _ev(EntityEvent, entity, at=at, action="registered", name="舞泉镇老街烩面馆", kind=kind, township="舞泉镇"),
        st,
        ("r", 0, _n[0]),
    )


def test_complaint_surge_raises_model_risk_with_explanation_then_resolves_when_quiet():
    p, st = _proc(), EntityState()
    _register(p, st, kind="medical_beauty")
    alerts, risks = [], []
    for i in range(6):  # six pricing complaints (no rule) within three hours
        out = p.process(
            _ev(Complaint, at=T0 + timedelta(minutes=30 * i), channel="12345", category="pricing"), st, ("c", 0, i)
        )
        alerts += out.alerts
        risks += out.risk
    risk_alerts = [a for a in alerts if a.rule == "model.risk"]
    assert risk_alerts and risk_alerts[0].status.value == "firing"
    a = risk_alerts[-1]
    assert a.fingerprint == "E1|7|model.risk" and a.level.value in ("orange", "red")
    assert a.explanation[0].signal == "rate.complaint" and "投诉量激增" in a.explanation[0].detail
    assert a.departments[0] == "health" and "综合风险评分" in a.title
    assert risks and risks[-1].level == a.level.value and risks[-1].item_id == 7
    # quiet for three days: the next event finds the risk decayed and the alert resolved
    out = p.process(
        _ev(VideoDetection, at=T0 + timedelta(days=3), camera_id="c1", cls="no_mask", confidence=0.7), st, ("v", 0, 1)
    )
    res = [x for x in out.alerts if x.rule == "model.risk"]
    assert res and res[0].status.value == "resolved" and res[0].alert_id == a.alert_id
    assert out.risk and out.risk[0].score < 45


def test_rule_alert_is_not_doubled_by_a_risk_alert():
    p, st = _proc(), EntityState()
    _register(p, st, kind="food_producer")
    out = p.process(_ev(Complaint, channel="12315", category="food_poisoning"), st, ("c", 0, 1))
    assert [a.rule for a in out.alerts] == ["rule.complaint.food_poisoning"]
    assert out.risk[0].level == "red"


def test_inspection_model_scores_before_learning():
    p, st = _proc(), EntityState()
    _register(p, st, kind="retail_pharmacy")
    ps = []
    for k in range(40):
        bad = k % 2 == 0
        ev = _ev(
            InspectionResult,
            at=T0 + timedelta(days=k),
            inspection_id=f"I{k}",
            item_id=2,
            departments=["amr"],
            violations=[{"code": "D1", "severity": "serious"}] if bad else [],
            outcome="fail" if bad else "pass",
        )
        n = p.model.n_seen
        out = p.process(ev, st, ("i", 0, k))
        assert p.model.n_seen == n + 1 and out.inspection_p is not None
        ps.append(out.inspection_p)
    assert st.history.n_insp == 40 and ps[0] == pytest.approx(0.14)
    assert 0 <= min(ps) <= max(ps) <= 1
    p2 = _proc()
    p2.model_loads(p.model_dumps())
    assert p2.model.n_seen == 40


_OFF = itertools.count()  # Kafka offsets only grow


def test_processor_state_stays_bounded():
    """A year of a busy entity: readings, detections, complaints, inspections → state stays small."""
    p, st = _proc(), EntityState()
    t = T0 - timedelta(days=365)
    _register(p, st, kind="food_producer", at=t)
    sizes = []
    for day in range(365):
        for h in range(0, 24, 2):
            at = t + timedelta(days=day, hours=h)
            for dev in ("FRZ-1", "CHL-1"):
                p.process(
                    _ev(
                        SensorReading,
                        at=at,
                        device_id=dev,
                        channel="cold_chain_temp",
                        value=(12.0 if day % 50 == 7 and h == 10 else 3.0 + (h % 5) * 0.2),
                        unit="C",
                    ),
                    st,
                    ("s", 0, next(_OFF)),
                )
            p.process(
                _ev(VideoDetection, at=at, camera_id="c1", cls=("no_mask", "smoking", "rodent")[h % 3], confidence=0.9),
                st,
                ("v", 0, next(_OFF)),
            )
        if day % 9 == 0:
            p.process(
                _ev(Complaint, at=t + timedelta(days=day, hours=12), channel="12315", category="food_quality"),
                st,
                ("c", 0, next(_OFF)),
            )
        if day % 30 == 0:
            p.process(
                _ev(
                    InspectionResult,
                    at=t + timedelta(days=day, hours=10),
                    inspection_id=f"I{day}",
                    item_id=1,
                    departments=["amr"],
                    violations=[],
                    outcome="pass",
                ),
                st,
                ("i", 0, next(_OFF)),
            )
        if day % 30 == 29:
            sizes.append(len(st.dumps()))
    assert len(st.recent) <= 64 and len(st.sensors) == 2 and len(st.rates) == 2
    assert len(st.risk.signals) <= 8 and len(st.alerts) <= 8
    assert st.last_seen == pytest.approx((t + timedelta(days=364, hours=22)).timestamp())
    assert max(sizes) < 16_000 and sizes[-1] <= 1.2 * sizes[3], sizes
    # what the eviction timer looks at: the event time of the last event
    assert EntityState.loads(st.dumps()).last_seen == st.last_seen


def test_old_pickled_state_loads_with_new_fields_empty():
    import pickle

    st = EntityState(name="x")
    raw = st.__getstate__()
    for k in ("history", "rates", "risk"):
        del raw[k]
    old = EntityState.__new__(EntityState)
    old.__setstate__(raw)
    old = pickle.loads(pickle.dumps(old))
    assert old.name == "x" and old.rates == {} and old.risk.signals == {} and old.history.n_insp == 0


def test_no_risk_alert_whose_strongest_signal_is_the_entitys_own_rule_case():
    """An elevator's fault-code case (the rule's alert, resolved but not yet closed) is worked as that
    case: the fused risk its own signal drives up raises no second, model.risk alert."""
    p, st = _proc(), EntityState()
    _register(p, st, kind="special_equipment")
    code = dict(device_id="d1", channel="elevator_fault", unit="code")
    p.process(_ev(SensorReading, at=T0, value=4, **code), st, ("s", 0, 1))
    oa = next(a for a in st.alerts.values() if a.rule == "rule.sensor.elevator_fault")
    oa.status = oa.lc.status = "resolved"  # 已处置 by its department; closes after the grace period
    st.risk.learn_one(T0.timestamp() + 60, "rule.sensor.elevator_fault", 0.9, CFG)
    out = p.process(_ev(SensorReading, at=T0 + timedelta(minutes=1), value=0, **code), st, ("s", 0, 2))
    assert out.risk and out.risk[-1].top[0].signal == "rule.sensor.elevator_fault"
    assert out.risk[-1].level in ("orange", "red")
    assert not [a for a in out.alerts if a.rule == "model.risk"]

"""The alert life cycle with an injected clock: every time is passed in, nothing sleeps."""

from __future__ import annotations

import doctest
import pickle
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import riskwatch.domain.lifecycle as lifecycle_mod
from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.lifecycle import (
    AlertLifecycle,
    FeedbackOutcome,
    LifecycleError,
    Silence,
    load_lifecycle,
)
from riskwatch.settings import DATA_DIR
from schemas.vocabulary import AlertStatus, Level

CAT = load_catalog()
LC = load_lifecycle(catalog=CAT)
M, H = 60.0, 3600.0
T0 = 1_800_000_000.0  # an arbitrary epoch second; the engine never reads the wall clock
ITEM1 = ["amr", "emergency", "eco"]  # 食品生产企业: lead + cooperating


def why(res: FeedbackOutcome) -> str:
    """The reason of a refusal (the test fails if it was accepted)."""
    assert res.rejected is not None, "accepted"
    return res.rejected


def _open(level="orange", item=1, depts=ITEM1, at=T0, score=100.0, **kw):
    return LC.open(
        "A1",
        "E000001",
        "rule.sensor.cold_chain_temp",
        item,
        level,
        depts,
        at=at,
        score=score,
        title="冷链温度超过8℃上限",
        entity_name="舞泉镇鑫源食品有限公司",
        **kw,
    )


def _run(st, start, end, step=M, silences=()):
    """Tick every ``step`` seconds from start to end inclusive; (time offset from T0, notification)."""
    out, t = [], start
    while t <= end:
        out += [(t - T0, n) for n in LC.tick(st, t, silences)]
        t += step
    return out


def test_doctests() -> None:
    assert doctest.testmod(lifecycle_mod).failed == 0


def test_full_lifecycle_with_injected_clock() -> None:
    st, out = _open("orange")  # orange: 5 minutes pending
    assert st.status == "pending" and out == []
    assert LC.observe(st, T0 + 2 * M, 90.0) == []
    assert LC.tick(st, T0 + 4 * M) == []
    fired = LC.tick(st, T0 + 5 * M)
    assert [n.kind for n in fired] == ["firing"] and st.status == "firing"
    assert fired[0].departments == ITEM1 and fired[0].at == T0 + 5 * M
    assert "橙色预警" in fired[0].text_zh and "8小时内签收" in fired[0].text_zh and "3天内反馈" in fired[0].text_zh

    assert LC.on_feedback(st, "amr", "acknowledged", T0 + 1 * H, "已签收").accepted
    assert st.status == "acknowledged"
    assert LC.on_feedback(st, "emergency", "in_progress", T0 + 2 * H).accepted
    assert st.status == "disposing"
    # a cooperating department's "disposed" does not resolve: the lead's does (resolve_on_disposed: lead)
    assert LC.on_feedback(st, "eco", "disposed", T0 + 3 * H).notifications == []
    assert st.status == "disposing"
    res = LC.on_feedback(st, "amr", "disposed", T0 + 4 * H, "已责令整改,冷库温度恢复")
    assert [n.kind for n in res.notifications] == ["resolved"] and st.status == "resolved"
    assert res.notifications[0].departments == ITEM1  # resolution notified at once, to every receiver

    assert LC.tick(st, T0 + 4 * H + 59 * M) == [] and st.status == "resolved"
    assert LC.tick(st, T0 + 5 * H) == [] and st.status == "closed"
    statuses = [(t.from_status, t.to_status, t.actor) for t in st.transitions if t.kind == "status"]
    assert statuses == [
        ("", "pending", "detector"),
        ("pending", "firing", "detector"),
        ("firing", "acknowledged", "amr"),
        ("acknowledged", "disposing", "emergency"),
        ("disposing", "resolved", "amr"),
        ("resolved", "closed", "system"),
    ]
    assert {s.value for s in AlertStatus} == {to for _, to, _ in statuses}
    fb = [t for t in st.transitions if t.kind == "feedback"]
    assert [(t.at - T0, t.actor) for t in fb] == [(1 * H, "amr"), (2 * H, "emergency"), (3 * H, "eco"), (4 * H, "amr")]
    assert "已责令整改" in fb[-1].comment
    assert st.revision == len(st.transitions)
    # closed is final: nothing more happens
    assert LC.observe(st, T0 + 6 * H, 100.0) == [] and LC.tick(st, T0 + 100 * H) == []
    assert LC.on_feedback(st, "amr", "acknowledged", T0 + 6 * H).rejected


def test_red_fires_at_once_and_pending_cancel_is_silent() -> None:
    st, out = _open("red")
    assert st.status == "firing" and [n.kind for n in out] == ["firing"]
    st, out = _open("yellow")  # 15 minutes pending
    assert out == [] and st.status == "pending"
    assert LC.observe(st, T0 + 10 * M, 10.0) == []
    assert st.status == "closed" and st.fired_at is None


def test_datetimes_are_accepted() -> None:
    t = datetime(2026, 11, 27, 8, 0)  # naive = Asia/Shanghai
    st, out = LC.open("A2", "E2", "rule.x", 1, "red", ITEM1, at=t)
    assert out[0].at == datetime.fromisoformat("2026-11-27T08:00:00+08:00").timestamp()
    assert out[0].as_dict()["at"] == "2026-11-27T08:00:00+08:00"
    assert [n.kind for n in LC.tick(st, t + timedelta(hours=2))] == ["urge"]


def test_hysteresis_enter_and_exit() -> None:
    st, _ = _open("red")
    assert LC.observe(st, T0 + 1 * M, 50.0) == [] and st.status == "firing"  # 40 <= 50 < 60: still active
    out = LC.observe(st, T0 + 2 * M, 39.0)
    assert [n.kind for n in out] == ["resolved"] and st.status == "resolved"
    assert LC.observe(st, T0 + 3 * M, 55.0) == [] and st.status == "resolved"  # below enter: stays resolved
    out = LC.observe(st, T0 + 4 * M, 60.0)
    assert [n.kind for n in out] == ["firing"] and st.status == "firing" and "再次触发" in out[0].text_zh
    with pytest.raises(ValueError, match="below the enter threshold"):
        _open("red", score=59.0)


def test_urging_then_escalation_with_exponential_backoff() -> None:
    depts = ITEM1 + ["taskforce"]
    st, _ = _open("red", depts=depts)  # item 1 red: ack 2 h, dispose 24 h; reminders base 60 min ×2
    assert LC.on_feedback(st, "amr", "acknowledged", T0 + 30 * M).accepted
    seen = _run(st, T0, T0 + 40 * H)
    ack = [(t / H, n.kind, n.departments) for t, n in seen if "签收时限" in n.text_zh]
    assert ack[0] == (2.0, "urge", ["emergency", "eco", "taskforce"])  # only those that have not responded
    assert [(t, k) for t, k, _ in ack[1:]] == [
        (3.0, "escalate"),
        (5.0, "escalate"),
        (9.0, "escalate"),
        (17.0, "escalate"),
        (33.0, "escalate"),
    ]
    assert all(d == ["taskforce"] for _, _, d in ack[1:])
    assert "县应急管理局(emergency)" in [n for t, n in seen if t == 3 * H][0].text_zh
    assert "第1次" in [n for t, n in seen if t == 3 * H][0].text_zh
    dispose = [(t / H, n.kind, n.departments) for t, n in seen if "处置时限" in n.text_zh]
    assert dispose[:2] == [(24.0, "urge", ["amr"]), (25.0, "escalate", ["taskforce"])]

    # everybody answers: the acknowledgement reminders stop, disposal ones continue until disposed
    for d in ("emergency", "eco", "taskforce"):
        LC.on_feedback(st, d, "in_progress", T0 + 41 * H)
    later = _run(st, T0 + 41 * H, T0 + 200 * H)
    assert not any("签收时限" in n.text_zh for _, n in later)
    assert LC.on_feedback(st, "amr", "disposed", T0 + 201 * H).notifications[0].kind == "resolved"
    assert _run(st, T0 + 202 * H, T0 + 203 * H, step=30 * M) == []


def test_backoff_is_capped() -> None:
    mins = [LC.reminder_interval("red", k) / M for k in range(1, 9)]
    assert mins == [60, 120, 240, 480, 960, 1920, 2880, 2880]
    assert LC.reminder_interval("blue", 1) / M == 1440


def test_item_specific_deadlines() -> None:
    assert LC.deadline(8, "red").ack_hours == 1 and LC.deadline(1, "red").ack_hours == 2
    st, _ = _open("red", item=8, depts=["amr", "emergency", "police", "fire", "urban"])
    assert [(t / H, n.kind) for t, n in _run(st, T0, T0 + 1 * H)] == [(1.0, "urge")]


def test_flapping_holds_notifications_until_stable() -> None:
    st, _ = _open("red")
    seen = []
    for k in range(1, 11):  # a change every 5 minutes, 10 changes
        seen += [(k * 5, n.kind) for n in LC.observe(st, T0 + k * 5 * M, 0.0 if k % 2 else 100.0)]
    # 4 changes in 60 min are tolerated; the 5th makes it flapping: one notice, then silence
    assert seen == [(5, "resolved"), (10, "firing"), (15, "resolved"), (20, "firing"), (25, "flapping")]
    assert st.flapping and st.suppressed >= 5
    # last change at 50 min (firing); stable 30 min later → one notice with the current state
    assert LC.tick(st, T0 + 79 * M) == []
    out = LC.tick(st, T0 + 80 * M)
    assert [n.kind for n in out] == ["stable"] and AlertStatus.firing.zh in out[0].text_zh and not st.flapping
    assert [n.kind for n in LC.observe(st, T0 + 81 * M, 0.0)] == ["resolved"]  # back to normal
    assert [t.comment for t in st.transitions if t.kind == "flapping"] == ["5 changes in 60 min", "stable"]


def test_silence_suppresses_and_expiry_notice() -> None:
    sil = [
        Silence("S1", ends_at=T0 + 3 * H, starts_at=T0 - H, entity_id="E000001", created_by="amr", comment="冷库检修")
    ]
    st, out = _open("red", silences=sil)
    assert out == [] and st.status == "firing" and st.silence_id == "S1" and st.suppressed == 1
    assert _run(st, T0, T0 + 3 * H - M, silences=sil) == []  # urging at 2 h also held back
    out = LC.tick(st, T0 + 3 * H, sil)
    assert [n.kind for n in out] == ["silence_expired", "escalate"]
    assert "静默期结束" in out[0].text_zh and out[0].departments == ITEM1
    assert st.silence_id is None
    assert any(t.kind == "silence" and "S1" in t.comment for t in st.transitions)


def test_silence_expiring_after_resolution_is_quiet_and_matchers() -> None:
    sil = [Silence("S2", ends_at=T0 + H, item_id=1, rule="rule.sensor.*")]
    st, out = _open("red", silences=sil)
    assert out == []
    assert LC.observe(st, T0 + 10 * M, 0.0, silences=sil) == [] and st.status == "resolved"
    assert LC.tick(st, T0 + H, sil) == []  # expired, but the alert is no longer active
    other = [Silence("S3", ends_at=T0 + H, rule="rule.video.*"), Silence("S4", ends_at=T0 + H, entity_id="E999")]
    st2, out2 = _open("red", silences=other)
    assert [n.kind for n in out2] == ["firing"]


def test_level_up_renotifies_at_once_and_tightens_deadlines() -> None:
    st, _ = _open("orange")
    LC.tick(st, T0 + 5 * M)  # fires (orange: ack 8 h)
    assert st.ack_due == T0 + 5 * M + 8 * H
    out = LC.observe(st, T0 + 1 * H, 100.0, level=Level.red)
    assert [n.kind for n in out] == ["level_up"] and "橙色→红色" in out[0].text_zh and out[0].level == "red"
    assert st.ack_due == T0 + 3 * H  # red ack 2 h from the change
    assert LC.observe(st, T0 + 2 * H, 100.0, level="yellow") == []  # a lower level: recorded, not notified
    assert st.level == "yellow" and [t.comment[:13] for t in st.transitions if t.kind == "level"] == [
        "orange→red(橙色",
        "red→yellow(红色",
    ]
    # the router's new receivers (red → task-force office) are added and told
    out = LC.observe(st, T0 + 3 * H - M, 100.0, level="red", departments=ITEM1 + ["taskforce"])
    assert [(n.kind, n.departments) for n in out] == [
        ("receiver_added", ["taskforce"]),
        ("level_up", ITEM1 + ["taskforce"]),
    ]


def test_pending_alert_upgraded_to_red_fires_at_once() -> None:
    st, _ = _open("blue")  # 30 minutes pending
    out = LC.observe(st, T0 + 1 * M, 100.0, level="red")
    assert [n.kind for n in out] == ["firing"] and st.level == "red"


def test_feedback_rules_non_receiver_and_not_ours() -> None:
    st, _ = _open("red")
    res = LC.on_feedback(st, "police", "acknowledged", T0 + M)
    assert not res.accepted and "police" in why(res) and "县公安局" in why(res) and "不是该预警的接收单位" in why(res)
    assert LC.on_feedback(st, "nosuch", "acknowledged", T0 + M).rejected
    assert "unknown feedback status" in why(LC.on_feedback(st, "amr", "done", T0 + M))
    assert not any(t.kind == "feedback" for t in st.transitions)  # refused feedback is not recorded

    res = LC.on_feedback(st, "eco", "not_ours", T0 + 10 * M, "无污染物排放问题")
    assert [(n.kind, n.departments) for n in res.notifications] == [("not_ours", ["taskforce"])]
    assert (
        "市生态环境局舞阳分局反馈非本部门职责" in res.notifications[0].text_zh
        and "无污染物排放问题" in res.notifications[0].text_zh
    )
    assert st.responders == ["amr", "emergency"]
    assert "not_ours" in why(LC.on_feedback(st, "eco", "acknowledged", T0 + 11 * M))
    # the urging at 2 h no longer targets eco
    urge = [n for _, n in _run(st, T0, T0 + 2 * H) if n.kind == "urge"]
    assert urge[0].departments == ["amr", "emergency"]


def test_everyone_not_ours_hands_it_to_the_taskforce_which_assigns() -> None:
    st, _ = _open("red", depts=["amr"])
    LC.on_feedback(st, "amr", "not_ours", T0 + M)
    assert st.responders == ["taskforce"] and "taskforce" in st.departments
    out = LC.add_receiver(st, "agri", T0 + 2 * M, actor="taskforce", comment="研判:属农业农村局职责")
    assert [(n.kind, n.departments) for n in out] == [("receiver_added", ["agri"])]
    assert LC.on_feedback(st, "agri", "acknowledged", T0 + 3 * M).accepted


def test_pending_alert_refuses_feedback() -> None:
    st, _ = _open("blue")
    assert "pending" in why(LC.on_feedback(st, "amr", "acknowledged", T0 + M))


def test_state_is_small_and_picklable() -> None:
    st, _ = _open("red")
    LC.on_feedback(st, "amr", "acknowledged", T0 + M)
    _run(st, T0, T0 + 10 * H, step=30 * M)
    assert not hasattr(st, "__dict__")  # slots
    raw = pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(raw)
    assert isinstance(back, AlertLifecycle) and back == st
    assert len(raw) < 4096
    # the engine continues on the restored state exactly as on the original
    assert [n.as_dict() for n in LC.tick(back, T0 + 20 * H)] == [n.as_dict() for n in LC.tick(st, T0 + 20 * H)]


def test_transitions_are_bounded() -> None:
    st, _ = _open("red")
    for k in range(1, 400):
        LC.observe(st, T0 + k * H, 0.0 if k % 2 else 100.0)
    assert len(st.transitions) == LC.policy.max_transitions
    assert st.dropped_transitions == st.revision - LC.policy.max_transitions


def test_policy_validation_names_line_and_field(tmp_path: Path) -> None:
    src = (DATA_DIR / "lifecycle.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "lifecycle.yaml"
    bad.write_text(
        src.replace("hysteresis: {enter: 60, exit: 40}", "hysteresis: {enter: 60, exit: 70}"), encoding="utf-8"
    )
    with pytest.raises(LifecycleError, match=r"line 11 \(hysteresis\).*exit \(70.0\) must be <= enter"):
        load_lifecycle(bad, catalog=CAT)
    bad.write_text(src.replace("  special_equipment:   #", "  nosuch:   #"), encoding="utf-8")
    with pytest.raises(LifecycleError, match="unknown item 'nosuch'"):
        load_lifecycle(bad, catalog=CAT)
    bad.write_text(src.replace("blue:   {ack_hours: 72, dispose_hours: 360}", ""), encoding="utf-8")
    with pytest.raises(LifecycleError, match="deadlines: missing level"):
        load_lifecycle(bad, catalog=CAT)


def test_taskforce_reassigns_after_not_ours_releasing_the_refusing_lead() -> None:
    st, _ = _open("orange", immediate=True)  # amr leads, emergency and eco cooperate
    LC.on_feedback(st, "emergency", "acknowledged", T0 + M)
    LC.on_feedback(st, "amr", "not_ours", T0 + 10 * M, "非食品生产环节")
    at = T0 + 9 * H  # past the first 8 h acknowledgement deadline: the new department's start now
    res = LC.reassign(st, "taskforce", ["agri"], at, "属农产品种植环节,由县农业农村局负责", user="王五")
    assert res.accepted
    assert st.departments == ["agri", "emergency", "eco"] and st.lead == "agri"  # amr released, agri leads
    assert st.responders == ["agri", "emergency", "eco"]
    # amr (released) is told it no longer needs to act, with the reason; agri is told to take it (last:
    # the alert's latest revision says who is responsible now)
    assert [(n.kind, n.departments) for n in res.notifications] == [("released", ["amr"]), ("receiver_added", ["agri"])]
    text = res.notifications[1].text_zh
    assert "专班改派" in text and "县农业农村局" in text and "属农产品种植环节" in text and "8小时内签收" in text
    freed = res.notifications[0].text_zh
    assert freed.startswith("【橙色预警·专班改派】") and "已改由县农业农村局负责(理由:属农产品种植环节" in freed
    assert freed.endswith("县市场监管局无需继续处置。")
    assert st.ack_due == at + 8 * H and st.dispose_due == at + 72 * H and st.ack_reminders == 0
    rows = [(t.kind, t.actor, t.comment) for t in st.transitions[-4:]]
    assert rows[0] == ("feedback", "taskforce/王五", "reassign(专班改派) → agri:属农产品种植环节,由县农业农村局负责")
    assert rows[1] == ("receivers", "taskforce/王五", "+agri -amr")
    assert rows[2][0] == "notify" and "released → amr" in rows[2][2]
    assert rows[3][0] == "notify" and "receiver_added → agri" in rows[3][2]
    # amr is no longer a receiver; agri must answer and is the one urged at its deadline
    assert "不是该预警的接收单位" in why(LC.on_feedback(st, "amr", "acknowledged", at + M))
    urge = [n for _, n in _run(st, at, at + 8 * H, step=30 * M) if n.kind == "urge"]
    assert [n.departments for n in urge] == [["agri", "eco"]]  # eco never answered either
    assert LC.on_feedback(st, "agri", "disposed", at + 9 * H, "已处置").notifications[0].kind == "resolved"


def test_reassign_when_everyone_refused_takes_the_office_off_and_may_overrule_a_refusal() -> None:
    st, _ = _open("red", depts=["amr", "emergency"])
    LC.on_feedback(st, "amr", "not_ours", T0 + M, "a")
    LC.on_feedback(st, "emergency", "not_ours", T0 + 2 * M, "b")
    assert st.responders == ["taskforce"]
    res = LC.reassign(st, "taskforce", ["emergency"], T0 + 3 * M, "经研判属应急管理职责")
    assert res.accepted and st.departments == ["emergency"] and st.responders == ["emergency"]
    assert st.transitions[-3].comment == "+emergency -amr,taskforce" and st.transitions[-3].actor == "taskforce"
    # released: amr and the office; amr is told, the office decided it and is not told its own decision
    assert [(n.kind, n.departments) for n in res.notifications] == [
        ("released", ["amr"]),
        ("receiver_added", ["emergency"]),
    ]
    assert LC.on_feedback(st, "emergency", "acknowledged", T0 + 4 * M).accepted  # its refusal is overruled
    assert st.status == "acknowledged"


def test_reassign_refusals() -> None:
    st, _ = _open("orange", immediate=True)
    LC.on_feedback(st, "amr", "not_ours", T0 + M, "x")
    n = len(st.transitions)
    r = why(LC.reassign(st, "amr", ["agri"], T0 + 2 * M, "理由"))
    assert r.startswith("只有专班办公室可以改派") and "'amr'" in r
    assert "assign_to" in why(LC.reassign(st, "taskforce", [], T0 + 2 * M, "理由"))
    assert "unknown department" in why(LC.reassign(st, "taskforce", ["nosuch"], T0 + 2 * M, "理由"))
    assert "理由" in why(LC.reassign(st, "taskforce", ["agri"], T0 + 2 * M, "  "))
    assert "已是该预警的责任部门" in why(LC.reassign(st, "taskforce", ["emergency"], T0 + 2 * M, "理由"))
    assert len(st.transitions) == n  # nothing recorded
    LC.on_feedback(st, "emergency", "disposed", T0 + 3 * M, "done")  # amr refused: emergency and eco remain
    LC.on_feedback(st, "eco", "disposed", T0 + 3 * M, "done")
    assert st.status == "resolved"
    assert "不能改派" in why(LC.reassign(st, "taskforce", ["agri"], T0 + 4 * M, "理由"))

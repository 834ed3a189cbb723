"""The task-force office's 改派 (DisposalFeedback status=reassign) through the processor, pure
Python: the contract's checks, the office-only rule (others are refused → dead letter) and the new
alert revision with its receivers. The lifecycle rules themselves are in tests/test_lifecycle.py;
the workbench form and the real worker in tests/test_web_browser.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from riskwatch.domain.county import load_county
from schemas.events import DisposalFeedback, EntityEvent, InspectionTask, SensorReading
from streams.engine.dispatch import Processor
from streams.engine.state import EntityState

COUNTY = load_county()
T = datetime(2026, 11, 27, 8, tzinfo=UTC)


def _fb(n: int, alert_id: str, dept: str, status: str, **kw) -> DisposalFeedback:
    return DisposalFeedback.model_validate(
        dict(
            event_id=f"f{n}",
            entity_id="E1",
            occurred_at=T + timedelta(minutes=n),
            source="workbench",
            alert_id=alert_id,
            department=dept,
            status=status,
            **kw,
        ),
        context={"catalog": COUNTY.catalog},
    )


def test_contract_needs_targets_and_reason_and_known_codes() -> None:
    with pytest.raises(ValidationError, match="assign_to"):
        _fb(1, "a", "taskforce", "reassign", comment="理由")
    with pytest.raises(ValidationError, match="reason"):
        _fb(1, "a", "taskforce", "reassign", assign_to=["agri"])
    with pytest.raises(ValidationError, match="unknown department"):
        _fb(1, "a", "taskforce", "reassign", assign_to=["nosuch"], comment="理由")
    with pytest.raises(ValidationError, match="only for status=reassign"):
        _fb(1, "a", "amr", "acknowledged", assign_to=["agri"])


def test_processor_applies_the_office_decision_and_refuses_anyone_else() -> None:
    p = Processor.from_county(COUNTY, clock=lambda: T.timestamp())
    st = EntityState()
    p.process(
        EntityEvent(
            event_id="r1",
            entity_id="E1",
            occurred_at=T,
            source="amr",
            action="registered",
            name="舞泉镇鑫源食品有限公司",
            kind="food_producer",
            township="舞泉镇",
        ),
        st,
        ("events.registry", 0, 0),
    )
    for i in range(3):
        out = p.process(
            SensorReading(
                event_id=f"s{i}",
                entity_id="E1",
                occurred_at=T,
                source="iot",
                device_id="d1",
                channel="cold_chain_temp",
                value=9.8,
                unit="C",
            ),
            st,
            ("events.sensor", 0, i),
        )
    aid = out.alerts[0].alert_id
    assert [(t.task_id, t.department) for t in out.tasks] == [(f"AT-{aid}", "amr")]  # the lead's on-site check
    assert p.process(_fb(1, aid, "amr", "not_ours", comment="非本局"), st, ("events.feedback", 0, 1)).rejected is None
    out = p.process(_fb(2, aid, "amr", "reassign", assign_to=["agri"], comment="理由"), st, ("events.feedback", 0, 2))
    assert (out.rejected or "").startswith("只有专班办公室可以改派") and not out.alerts and not out.transitions
    out = p.process(
        _fb(3, aid, "taskforce", "reassign", assign_to=["agri"], comment="属农业农村局职责", user="王五"),
        st,
        ("events.feedback", 0, 3),
    )
    assert out.rejected is None
    freed, a = out.alerts[-2:]  # the release first: the latest revision says who is responsible now
    assert a.notification == "receiver_added" and a.recipients == ["agri"]
    assert a.departments == ["agri", "emergency", "eco"] and a.lead_department == "agri"
    assert a.ack_due == T + timedelta(minutes=3, hours=8)  # orange: 8 h from the decision
    # the released lead: one revision to it alone (alerts.amr), it is no longer a receiver
    assert freed.notification == "released" and freed.recipients == ["amr"] and "amr" not in freed.departments
    assert "已改由县农业农村局负责" in freed.message and a.revision == freed.revision + 1
    assert [(x["kind"], x["actor"]) for x in out.transitions] == [
        ("feedback", "taskforce/王五"),
        ("receivers", "taskforce/王五"),
        ("notify", "riskwatch"),
        ("notify", "riskwatch"),
    ]
    # the lead changed: its on-site check moves to agri (same task id and row key, due by agri's deadline)
    task = st.tasks[f"AT-{aid}"]
    assert a.dispose_due is not None and (task.department, task.due) == ("agri", a.dispose_due.timestamp())
    [row] = out.tasks
    assert (row.event_id, row.department, row.due, row.kind) == (f"AT-{aid}", "agri", a.dispose_due, "alert")
    assert row.occurred_at == a.first_seen  # the row's key (entity, time the alert fired, task id) is unchanged
    # the lead did not change (agri now adds eco's replacement): nothing moves
    p.process(_fb(4, aid, "eco", "not_ours", comment="非本局"), st, ("events.feedback", 0, 4))
    out = p.process(
        _fb(5, aid, "taskforce", "reassign", assign_to=["health"], comment="属卫健局职责"),
        st,
        ("events.feedback", 0, 5),
    )
    assert out.rejected is None and out.alerts[-2].lead_department == "agri" and not out.tasks
    assert st.tasks[f"AT-{aid}"].department == "agri"


def _alert_with_plan(p: Processor, entity: str, plan_due: timedelta, t0: datetime = T) -> tuple[EntityState, str, str]:
    """An orange item-1 alert of amr (its on-site check due in 3 days) and a health plan due at
    ``plan_due``: one joint visit led by amr (item 1's lead). Returns state, alert id, plan id."""
    st = EntityState()
    p.process(
        EntityEvent(
            event_id=f"r-{entity}",
            entity_id=entity,
            occurred_at=t0,
            source="amr",
            action="registered",
            name="舞泉镇鑫源食品有限公司",
            kind="food_producer",
            township="舞泉镇",
        ),
        st,
        ("events.registry", 0, 0),
    )
    p.process(
        InspectionTask(
            event_id=f"pl-{entity}",
            entity_id=entity,
            occurred_at=t0,
            source="health",
            task_id=f"PL-{entity}",
            department="health",
            due=t0 + plan_due,
        ),
        st,
        ("events.task", 0, 0),
    )
    for i in range(3):
        out = p.process(
            SensorReading(
                event_id=f"s{i}-{entity}",
                entity_id=entity,
                occurred_at=t0,
                source="iot",
                device_id="d1",
                channel="cold_chain_temp",
                value=9.8,
                unit="C",
            ),
            st,
            ("events.sensor", 0, i),
        )
    [plan] = out.plans
    assert (plan.lead, plan.departments, plan.joint) == ("amr", ["amr", "health"], True)
    return st, out.alerts[0].alert_id, plan.inspection_id


def _reassign(p: Processor, st: EntityState, entity: str, aid: str, after: timedelta, t0: datetime = T):
    fb = dict(entity_id=entity, occurred_at=t0 + after, source="workbench", alert_id=aid, comment="属农业农村局职责")
    p.process(
        DisposalFeedback.model_validate(dict(fb, event_id=f"n-{entity}", department="amr", status="not_ours")),
        st,
        ("events.feedback", 0, 1),
    )
    return p.process(
        DisposalFeedback.model_validate(
            dict(fb, event_id=f"ra-{entity}", department="taskforce", status="reassign", assign_to=["agri"]),
            context={"catalog": COUNTY.catalog},
        ),
        st,
        ("events.feedback", 0, 2),
    )


def test_a_moved_onsite_check_takes_its_joint_visit_along_or_leaves_it() -> None:
    p = Processor.from_county(COUNTY, clock=lambda: T.timestamp())
    # the plan after the check: the visit stays one, same id, now without amr (the check lost its item)
    st, aid, iid = _alert_with_plan(p, "E1", timedelta(days=5))
    out = _reassign(p, st, "E1", aid, timedelta(minutes=3))
    [plan] = out.plans
    assert (plan.inspection_id, plan.lead, plan.departments, plan.joint) == (iid, "agri", ["agri", "health"], True)
    assert plan.planned_at > T and [t.department for t in out.tasks] == ["agri"]
    # the plan before the check, the decision 13 days later: the check's new due date (16 days) is
    # beyond the 14-day window, so the visit keeps its id with health's plan alone
    t0 = T - timedelta(days=20)
    st, aid, iid = _alert_with_plan(p, "E2", timedelta(days=1), t0)
    out = _reassign(p, st, "E2", aid, timedelta(days=13), t0)
    [plan] = out.plans
    assert (plan.inspection_id, plan.departments, plan.task_ids, plan.joint) == (iid, ["health"], ["PL-E2"], False)

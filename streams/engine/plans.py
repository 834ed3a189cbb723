"""Joint inspections (联合检查): an entity's pending inspection tasks of several departments are
merged into one visit (``riskwatch/domain/planning.py``); a serious alert asks its lead department
for an on-site check, which moves with the alert when the office makes another department lead.

>>> from riskwatch.domain.county import load_county
>>> cx, st, out = Context.of(load_county()), EntityState(name="A", township="城关镇"), Outcome()
>>> st.tasks["t1"] = Task("t1", "E1", "amr", 86400.0 * 3, 1, "plan")
>>> st.tasks["t2"] = Task("t2", "E1", "health", 86400.0 * 4, None, "plan")
>>> plan(cx, "E1", st, out, "t2", 0.0)
>>> [(p.lead, p.departments, p.joint) for p in out.plans]
[('amr', ['amr', 'health'], True)]
"""

from __future__ import annotations

from dataclasses import replace as dc_replace

from riskwatch.domain.planning import InspectionTask as Task
from riskwatch.domain.planning import JointInspection, merge_tasks
from schemas.events import InspectionPlan, InspectionTask, TaskSource
from streams.engine.context import Context
from streams.engine.outcome import Outcome
from streams.engine.revision import dt
from streams.engine.state import EntityState, OpenAlert

STALE_S = 90 * 86400  # a task overdue this long is dropped, never planned


def plan(
    cx: Context, entity_id: str, st: EntityState, out: Outcome, task_id: str, at: float, moved: bool = False
) -> None:
    """Merge the entity's pending tasks; publish the visit the new task belongs to when several
    departments take part (a joint inspection led by the item's lead department). ``moved``:
    the task changed department; a plan already published with it is published again (same
    ``inspection_id``, later ``planned_at``: the new version of its row)."""
    window = cx.planning.joint_window_days * 86400
    for k in [k for k, t in st.tasks.items() if _due(t) < at - STALE_S]:
        del st.tasks[k]
    for ji in merge_tasks(st.tasks.values(), window, cx.catalog):
        if not any(t.task_id == task_id for t in ji.tasks):
            continue
        again = moved and ji.inspection_id in st.plans
        if not again and (not ji.joint or ji.inspection_id in st.plans):
            continue
        if not again:
            st.plans = [*st.plans[-15:], ji.inspection_id]
        out.plans.append(plan_of(entity_id, st, ji, at))


def plan_of(entity_id: str, st: EntityState, ji: JointInspection, at: float) -> InspectionPlan:
    return InspectionPlan(
        inspection_id=ji.inspection_id,
        entity_id=entity_id,
        entity_name=st.name,
        township=st.township,
        lead=ji.lead,
        departments=list(ji.departments),
        item_ids=list(ji.item_ids),
        due=dt(ji.due),
        joint=ji.joint,
        task_ids=[t.task_id for t in ji.tasks],
        sources=[t.source for t in ji.tasks],
        planned_at=dt(at),
    )


def alert_task(cx: Context, entity_id: str, st: EntityState, out: Outcome, oa: OpenAlert, at: float) -> None:
    """A firing alert of a serious level asks its lead department for an on-site check."""
    if oa.level not in cx.planning.alert_task_levels or oa.lc.dispose_due is None:
        return
    tid = f"AT-{oa.alert_id}"
    if tid in st.tasks:
        return
    st.tasks[tid] = t = Task(
        tid, entity_id, oa.departments[0], oa.lc.dispose_due, oa.item_id, "alert", oa.alert_id, f"预警核查:{oa.title}"
    )
    out.tasks.append(task_event(t, oa))
    plan(cx, entity_id, st, out, tid, at)


def task_event(t: Task, oa: OpenAlert) -> InspectionTask:
    """The alert's on-site check as an ``events_task`` row: keyed by the task id and the time the
    alert fired, so a moved task (专班改派 to a new lead) is a new version of the same row."""
    return InspectionTask.model_construct(
        event_id=t.task_id,
        entity_id=t.entity_id,
        occurred_at=dt(oa.lc.fired_at or oa.first_seen),
        source="riskwatch",
        schema_version=1,
        task_id=t.task_id,
        department=t.department,
        due=dt(_due(t)),
        item_id=t.item_id,
        kind=TaskSource.alert,
        ref=t.ref,
        note=t.note,
    )


def move_alert_task(
    cx: Context, entity_id: str, st: EntityState, out: Outcome, oa: OpenAlert, old_lead: str, at: float
) -> None:
    """The office made another department lead (专班改派): the alert's on-site check, if the old
    lead still has it (not yet inspected), moves to the new lead, due by the new disposal
    deadline; the joint visits it was or now is part of are published again."""
    tid = f"AT-{oa.alert_id}"
    t = st.tasks.get(tid)
    if t is None or t.department != old_lead or oa.lc.dispose_due is None:
        return
    window = cx.planning.joint_window_days * 86400
    before = next(
        (ji for ji in merge_tasks(st.tasks.values(), window, cx.catalog) if any(x.task_id == tid for x in ji.tasks)),
        None,
    )
    # without its item: the item's lead was released from this alert, and an item would make it
    # lead a joint visit again (merge_tasks: the item's lead leads)
    st.tasks[tid] = t = Task(tid, entity_id, oa.lc.lead, oa.lc.dispose_due, None, t.source, t.ref, t.note)
    out.tasks.append(task_event(t, oa))
    plan(cx, entity_id, st, out, tid, at, moved=True)
    if (
        before is not None
        and before.inspection_id in st.plans
        and not any(p.inspection_id == before.inspection_id for p in out.plans)
    ):
        # the new due date took the check out of the visit it was planned in: that visit keeps
        # its id (a new version of its row) with the tasks that remain
        rest = [x for x in before.tasks if x.task_id != tid]
        if rest:
            ji = merge_tasks(rest, float("inf"), cx.catalog)[0]
            out.plans.append(plan_of(entity_id, st, dc_replace(ji, inspection_id=before.inspection_id), at))


def _due(t: Task) -> float:
    """A task's due time in seconds (the engine stores floats; the planner also accepts datetimes)."""
    return t.due if isinstance(t.due, float | int) else t.due.timestamp()

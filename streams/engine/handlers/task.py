"""An inspection task (a department's pending visit: from a plan, a spot check or an alert):
kept until an inspection does it, and merged with the entity's other tasks into joint visits.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import InspectionTask
>>> cx = Context.of(load_county()); st, out = EntityState(), Outcome()
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> ev = InspectionTask(event_id="t1", entity_id="E1", occurred_at=t, source="plan", task_id="T1",
...     department="amr", due=t, kind="plan")
>>> handle(cx, Desk(cx), ev, st, out); sorted(st.tasks), out.plans
(['T1'], [])
"""

from __future__ import annotations

from riskwatch.domain.planning import InspectionTask as Task
from schemas.events import InspectionTask
from streams.engine import plans
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState


def handle(cx: Context, desk: Desk, ev: InspectionTask, st: EntityState, out: Outcome) -> None:
    if ev.task_id in st.tasks:
        return
    st.tasks[ev.task_id] = Task(
        ev.task_id, ev.entity_id, ev.department, ev.due.timestamp(), ev.item_id, ev.kind.value, ev.ref, ev.note
    )
    plans.plan(cx, ev.entity_id, st, out, ev.task_id, ev.occurred_at.timestamp())

"""A registry event (名录库: registered, updated, closed): the entity's name, kind, township and
licence; a new registration tells the lead departments of its items (双告知), or the task-force
office when no item covers its kind (待研判).

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import EntityEvent
>>> cx = Context.of(load_county()); st, out = EntityState(), Outcome()
>>> ev = EntityEvent(event_id="r1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     source="amr", action="registered", name="鑫源食品", kind="food_producer", township="舞泉镇")
>>> handle(cx, Desk(cx), ev, st, out); st.registered, [n.kind for n in out.notices]
(True, ['dual_notification'])
"""

from __future__ import annotations

from schemas.events import EntityEvent
from streams.engine import texts
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Notice, Outcome
from streams.engine.state import EntityState


def handle(cx: Context, desk: Desk, ev: EntityEvent, st: EntityState, out: Outcome) -> None:
    new = not st.registered
    st.name, st.kind, st.township = ev.name, ev.kind, ev.township
    st.registered = True
    st.closed = ev.action == "closed"
    st.licensed = bool(ev.licence)
    if not (new and ev.action == "registered"):
        return
    items = cx.catalog.items_for_kind(ev.kind)
    kind_zh = cx.catalog.entity_kinds[ev.kind].name
    if items:
        leads = sorted({i.lead for i in items})
        names = "、".join(i.name for i in items)
        out.notices.append(
            Notice(
                "dual_notification",
                ev.entity_id,
                leads,
                texts.dual_notification(kind_zh, ev.name, ev.township, names),
                ev.occurred_at,
            )
        )
    else:
        tf = cx.catalog.taskforce_office
        out.notices.append(Notice("unassigned", ev.entity_id, [tf], texts.unassigned(ev.name, kind_zh), ev.occurred_at))

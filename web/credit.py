"""The credit reminder of an alert page (联合惩戒提醒): the measures the alert's receiving departments
apply to a listed entity, looked up in the ``credit`` table when the page is shown
(:mod:`riskwatch.domain.credit`; the notify bridge adds the same reminder to the notification text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from riskwatch.domain.catalog import Catalog
from riskwatch.domain.credit import ENTITY_SQL, CreditRow, CreditStatus, Measure, load_credit, reminders
from web.data import Reader


@dataclass(frozen=True, slots=True)
class PageReminder:
    list_name: str
    listing: CreditRow
    dept_name: str
    measures: tuple[Measure, ...]


async def alert_reminders(
    reader: Reader, entity_id: str, departments: Sequence[str], catalog: Catalog
) -> list[PageReminder]:
    """Per receiving department and active listing of the entity, that department's measures."""
    st = CreditStatus.of(CreditRow.from_row(x) for x in await reader.rows(ENTITY_SQL, e=entity_id))
    if not st.listed:
        return []
    out = []
    for d in departments:
        name = catalog.departments[d].name if d in catalog.departments else d
        out += [PageReminder(rm.list_name, rm.listing, name, rm.measures) for rm in reminders(st, load_credit(), [d])]
    return out

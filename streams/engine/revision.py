"""One alert revision as published: an :class:`~schemas.events.Alert` built from the engine's
:class:`~streams.engine.state.OpenAlert` and, when one is due, the lifecycle's notification.

>>> level_score("orange"), dt(0.0).isoformat()
(80.0, '1970-01-01T00:00:00+00:00')
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from riskwatch.domain.catalog import Catalog
from riskwatch.domain.lifecycle import Notification
from schemas.events import Alert, Contribution, NotificationKind
from schemas.privacy import mask_pii
from schemas.vocabulary import OPEN_STATUSES, AlertStatus, Level
from streams.engine import texts
from streams.engine.state import EntityState, OpenAlert

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LEVEL_SCORE = {"blue": 40.0, "yellow": 60.0, "orange": 80.0, "red": 95.0}


def level_score(level: str) -> float:
    return _LEVEL_SCORE[level]


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def alert(
    catalog: Catalog,
    web_url: str,
    entity_id: str,
    source: str,
    st: EntityState,
    oa: OpenAlert,
    why: list[Contribution],
    note: Notification | None,
    updated_at: float,
) -> Alert:
    item = catalog.items.get(oa.item_id) if oa.item_id else None
    lc = oa.lc
    level = Level(oa.level)
    name = st.name or entity_id
    message = (
        note.text_zh
        if note is not None
        else texts.alert_message(
            level.zh,
            oa.status,
            name,
            st.township,
            oa.title,
            catalog.dept_name(oa.departments[0]) if oa.departments else None,
        )
    )
    is_open = oa.status in OPEN_STATUSES
    return Alert(
        alert_id=oa.alert_id,
        revision=oa.revision,
        fingerprint=oa.fingerprint,
        entity_id=entity_id,
        entity_name=name,
        entity_kind=st.kind,
        township=st.township,
        item_id=oa.item_id,
        item_name=item.name if item else texts.UNASSIGNED_ITEM,
        rule=oa.rule,
        level=level,
        level_zh=level.zh,
        status=AlertStatus(oa.status),
        score=min(100.0, max(0.0, oa.score)),
        title=mask_pii(oa.title),
        message=mask_pii(message),  # 非本部门 / 改派 / 不予受理 reasons ride in the text
        explanation=why,
        lead_department=oa.departments[0],
        departments=list(oa.departments),
        first_seen=dt(oa.first_seen),
        last_seen=dt(oa.last_seen),
        updated_at=dt(updated_at),
        source_event_id=source,
        notification=cast(NotificationKind, note.kind) if note is not None else None,
        recipients=list(note.departments) if note is not None else [],
        ack_due=dt(lc.ack_due) if is_open and lc.ack_due else None,
        dispose_due=dt(lc.dispose_due) if is_open and lc.dispose_due else None,
        flapping=lc.flapping,
        evidence_hash=oa.evidence.hash if oa.evidence is not None else "",
        transfer=lc.transfer_status,
        url=f"{web_url}/alerts/{oa.alert_id}" if web_url else "",
        # the chain head this revision vouches for (chain.transition_rows numbers the last row lc.revision)
        chain_seq=lc.revision if oa.chain else 0,
        chain_hash=oa.chain,
    )

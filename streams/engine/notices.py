"""Notices that reach a person: 双告知, 待研判 and township surges to departments, and the office's
supervision notes (督导单), each with a life cycle per recipient department.

A notice (``streams.engine.outcome.Notice`` on the ``notices`` topic) is delivered to each of its
departments: one :class:`NoticeRow` per (notice, department), kept in ClickHouse ``notices`` (the
ledger; ReplacingMergeTree, the latest version wins) with every change in ``notice_history``, a hash
chain per (notice, department) like the alerts' audit chain (``schemas/audit.py``). A department
answers on its own topic ``events.notice.<dept>`` with a :class:`NoticeAnswer`: 认领 (``confirm``) or
有异议 (``dispute``, with its reason) for a notice, ``answer`` for a 督导单. The department comes from
the topic, never from the body (as ``streams/engine/identity.py``): an answer to another department's
notice is refused. The office sends a 督导单 on its own topic (``send``); nobody else may.

No answer by the deadline (working hours, ``riskwatch/data/notices.yaml``) → 督促 (``urged``), again
every ``urge_every_hours``; after ``escalate_after`` urgings the notice is ``escalated`` (the office's
supervision page shows it). Every delivery and urging is also a notification (:class:`Delivery`) that
``riskwatch notify`` posts to Alertmanager like an alert's.

>>> from datetime import datetime, timezone
>>> rules = NoticeRules.load()
>>> at = datetime(2026, 12, 4, 16, 0, tzinfo=LOCAL_TZ)          # a Friday, 16:00
>>> rules.add_working_hours(at, 2).isoformat()                  # 1 h on Friday, 1 h on Monday
'2026-12-07T10:00:00+08:00'
>>> n = {"kind": "dual_notification", "entity_id": "E1", "departments": ["amr"], "text": "新登记", "at": at.isoformat()}
>>> (row, hist), = deliver(n, rules)
>>> row.status, row.deadline.isoformat(), hist.kind, hist.seq
('delivered', '2026-12-08T16:00:00+08:00', 'delivered', 1)
>>> ans = NoticeAnswer(event_id="w1", entity_id="E1", occurred_at=at, source="workbench", notice_id=row.notice_id,
...                    action="confirm", actor="li")
>>> refuse(row, "police", ans).split(" is ")[1]
"department 'amr''s, not 'police''s"
>>> new, h2 = apply(row, "amr", ans)
>>> new.status, new.answered_by, h2.prev_hash == hist.hash, h2.seq
('confirmed', 'amr/li', True, 2)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

import orjson
import yaml
from pydantic import Field, model_validator

from schemas.audit import chain_hash, chain_row
from schemas.events import LOCAL_TZ, Event, Id, ShortText
from schemas.privacy import mask_pii
from schemas.vocabulary import NoticeState, NoticeType, zh

NOTICE_TOPIC = "events.notice"  # events.notice.<dept>: a department's answers, the office's 督导单
DELIVERY_TOPIC = "notices.delivery"  # one record per notification of a notice (→ Alertmanager)
DEFAULT_RULES = Path(__file__).resolve().parents[2] / "riskwatch" / "data" / "notices.yaml"
OPEN: frozenset[str] = frozenset({NoticeState.delivered, NoticeState.urged, NoticeState.escalated})


class NoticeAction(StrEnum):
    confirm = "confirm"  # 认领
    dispute = "dispute"  # 有异议 (comment: the reason)
    answer = "answer"  # a 督导单's answer (comment: what was done)
    send = "send"  # the office sends a 督导单 (department, subject, comment, deadline)


class NoticeAnswer(Event):
    """A department's answer to a notice, or the office's 督导单, on ``events.notice.<sender>``.

    Keyed (``entity_id``) by the notice's entity, or for a 督导单 by its subject's entity (else the
    target department's code)."""

    topic: ClassVar[str] = NOTICE_TOPIC

    notice_id: Id = Field(description="The notice answered; for `send`, the new 督导单's id")
    action: NoticeAction
    comment: Annotated[str, Field(max_length=1000)] = Field("", description="Reason (dispute), answer, or note text")
    actor: ShortText = Field("", description="Who (the workbench's user); the department is the topic's")
    department: ShortText = Field("", description="send: the department the 督导单 goes to")
    subject: ShortText = Field("", description="send: the alert, task or notice id the 督导单 is about")
    deadline: datetime | None = Field(None, description="send: answer by (default: answer_hours.supervision)")

    @model_validator(mode="after")
    def _complete(self) -> NoticeAnswer:
        if self.action in (NoticeAction.dispute, NoticeAction.answer, NoticeAction.send) and not self.comment.strip():
            raise ValueError(f"{self.action.value} needs a comment (the reason, the answer or the note's text)")
        if self.action == NoticeAction.send and not self.department:
            raise ValueError("send needs the target department")
        return self


@dataclass(frozen=True, slots=True)
class NoticeRules:
    """``riskwatch/data/notices.yaml``: the working day, answer deadlines per kind, urging."""

    start_hour: int
    end_hour: int
    weekdays: frozenset[int]
    answer_hours: dict[str, float]
    urge_every_hours: float
    escalate_after: int

    @classmethod
    def load(cls, path: Path | str | None = None) -> NoticeRules:
        d: dict[str, Any] = yaml.safe_load(Path(path or DEFAULT_RULES).read_text(encoding="utf-8"))
        wd = d["working_day"]
        rules = cls(
            int(wd["start"]),
            int(wd["end"]),
            frozenset(int(x) for x in wd["weekdays"]),
            {str(k): float(v) for k, v in d["answer_hours"].items()},
            float(d["urge_every_hours"]),
            int(d["escalate_after"]),
        )
        if not (0 <= rules.start_hour < rules.end_hour <= 24) or not rules.weekdays <= set(range(1, 8)):
            raise ValueError(f"{path or DEFAULT_RULES}: working_day must be 0 <= start < end <= 24, weekdays 1..7")
        unknown = set(rules.answer_hours) - {k.value for k in NoticeType}
        if unknown or rules.urge_every_hours <= 0:
            raise ValueError(f"{path or DEFAULT_RULES}: unknown kinds {sorted(unknown)} or urge_every_hours <= 0")
        return rules

    def add_working_hours(self, at: datetime, hours: float) -> datetime:
        """``at`` plus ``hours`` of working time (Asia/Shanghai), skipping nights and days off."""
        t = at.astimezone(LOCAL_TZ)
        left = timedelta(hours=hours)
        for _ in range(3660):  # at most ten years of days
            day_start = t.replace(hour=self.start_hour, minute=0, second=0, microsecond=0)
            day_end = day_start + timedelta(hours=self.end_hour - self.start_hour)
            if t.isoweekday() in self.weekdays and t < day_end:
                t = max(t, day_start)
                if t + left <= day_end:
                    return t + left
                left -= day_end - t
            t = (day_start + timedelta(days=1)).replace(hour=self.start_hour)
        raise ValueError("no working day in ten years: check working_day.weekdays")

    def deadline(self, kind: str, at: datetime) -> datetime:
        return self.add_working_hours(at, self.answer_hours.get(kind, self.answer_hours.get("dual_notification", 16)))


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """A notice as one department has it (a ``notices`` row)."""

    notice_id: str
    department: str
    kind: str
    entity_id: str
    township: str
    text: str  # masked
    subject: str  # 督导单: the alert/task/notice it is about
    sender: str  # system, or the office for a 督导单
    created_at: datetime
    deadline: datetime
    status: str
    answered_at: datetime | None = None
    answer: str = ""  # masked: the dispute's reason or the 督导单's answer
    answered_by: str = ""
    urged: int = 0
    next_urge_at: datetime | None = None
    seq: int = 0  # the chain's last seq
    head: str = ""  # the chain's last hash
    last_event: str = ""  # the event that made this version (a redelivered answer is skipped)

    @property
    def open(self) -> bool:
        return self.status in OPEN


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One change of a notice for one department (a ``notice_history`` row), chained."""

    notice_id: str
    department: str
    seq: int
    entity_id: str
    at: datetime
    kind: str  # delivered, urged, escalated, confirmed, disputed, answered
    from_status: str
    to_status: str
    actor: str
    comment: str  # masked
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification of a notice to one department (``notices.delivery`` → Alertmanager)."""

    notice_id: str
    department: str
    kind: str
    notification: str  # notice, urge, escalate
    seq: int
    entity_id: str
    text: str  # masked
    deadline: datetime
    at: datetime

    def dumps(self) -> bytes:
        return orjson.dumps(self)


def notice_id_of(n: dict[str, Any]) -> str:
    """A notice's id: the same notice (a redelivery) has the same id."""
    key = "|".join([n.get("kind", ""), n.get("entity_id", ""), n.get("township", ""), n.get("at", "")])
    key += "|" + ",".join(n.get("departments", [])) + "|" + n.get("text", "")
    return "N" + hashlib.sha256(key.encode()).hexdigest()[:15]


def _dt(v: str | datetime) -> datetime:
    t = v if isinstance(v, datetime) else datetime.fromisoformat(v)
    return t if t.tzinfo else t.replace(tzinfo=LOCAL_TZ)


def _chain(row: NoticeRow, at: datetime, kind: str, to: str, actor: str, comment: str) -> HistoryRow:
    seq = row.seq + 1
    c = mask_pii(comment)
    h = chain_hash(
        row.head,
        chain_row(f"{row.notice_id}/{row.department}", seq, row.entity_id, _ms(at), kind, row.status, to, actor, c),
    )
    return HistoryRow(
        row.notice_id, row.department, seq, row.entity_id, at, kind, row.status, to, actor, c, row.head, h
    )


def _ms(at: datetime) -> int:
    return int(round(at.timestamp() * 1000))


def _moved(row: NoticeRow, h: HistoryRow, **changes: Any) -> NoticeRow:
    return replace(row, status=h.to_status, seq=h.seq, head=h.hash, **changes)


def deliver(n: dict[str, Any], rules: NoticeRules) -> list[tuple[NoticeRow, HistoryRow]]:
    """A notice from the ``notices`` topic → one delivered row per recipient department."""
    at = _dt(n["at"])
    kind = str(n["kind"])
    nid = str(n.get("notice_id") or notice_id_of(n))
    deadline = _dt(n["deadline"]) if n.get("deadline") else rules.deadline(kind, at)
    out = []
    for dept in dict.fromkeys(n.get("departments", [])):
        base = NoticeRow(
            nid,
            dept,
            kind,
            str(n.get("entity_id", "")),
            str(n.get("township", "")),
            mask_pii(str(n.get("text", ""))),
            str(n.get("subject", "")),
            str(n.get("sender", "system")),
            at,
            deadline,
            status="",
            next_urge_at=deadline,
            last_event=nid,
        )
        h = _chain(base, at, "delivered", NoticeState.delivered.value, base.sender, base.text)
        out.append((_moved(base, h), h))
    return out


def supervision_notice(ev: NoticeAnswer, sender: str, rules: NoticeRules) -> dict[str, Any]:
    """The office's 督导单 as a notice (delivered like any other), from its ``send`` event."""
    return {
        "notice_id": ev.notice_id,
        "kind": NoticeType.supervision.value,
        "entity_id": ev.entity_id,
        "departments": [ev.department],
        "text": ev.comment,
        "subject": ev.subject,
        "sender": f"{sender}/{ev.actor}" if ev.actor else sender,
        "at": ev.occurred_at.isoformat(),
        "deadline": (ev.deadline or rules.deadline(NoticeType.supervision, ev.occurred_at)).isoformat(),
    }


def refuse(row: NoticeRow | None, sender: str, ev: NoticeAnswer, office: str = "taskforce") -> str | None:
    """Why ``sender`` (the topic's department) may not do ``ev``, or None."""
    if ev.action == NoticeAction.send:
        return None if sender == office else f"only the task-force office ({office}) sends 督导单, not {sender!r}"
    if row is None:
        return f"notice {ev.notice_id} was not delivered to department {sender!r}"
    if row.department != sender:  # never reached: rows are looked up by (notice, sender)
        return f"notice {ev.notice_id} is department {row.department!r}'s, not {sender!r}'s"
    supervision = row.kind == NoticeType.supervision
    if supervision != (ev.action == NoticeAction.answer):
        want = "answer" if supervision else "confirm or dispute"
        return f"notice {ev.notice_id} ({row.kind}) takes {want}, not {ev.action.value}"
    if not row.open and row.last_event != ev.event_id:
        return f"notice {ev.notice_id} was already answered by {sender!r} ({row.status})"
    return None


_DONE = {
    NoticeAction.confirm: NoticeState.confirmed,
    NoticeAction.dispute: NoticeState.disputed,
    NoticeAction.answer: NoticeState.answered,
}


def apply(row: NoticeRow, sender: str, ev: NoticeAnswer) -> tuple[NoticeRow, HistoryRow]:
    """A department's accepted answer (check :func:`refuse` first)."""
    to = _DONE[ev.action]
    actor = f"{sender}/{ev.actor}" if ev.actor else sender
    h = _chain(row, ev.occurred_at, to.value, to.value, actor, ev.comment)
    return _moved(
        row,
        h,
        answered_at=ev.occurred_at,
        answer=h.comment,
        answered_by=actor,
        next_urge_at=None,
        last_event=ev.event_id,
    ), h


def urge(row: NoticeRow, now: datetime, rules: NoticeRules) -> tuple[NoticeRow, HistoryRow] | None:
    """督促 an open notice whose deadline (or last urging's next time) has passed; escalate after
    ``escalate_after`` urgings."""
    if not row.open or row.next_urge_at is None or now < row.next_urge_at:
        return None
    n = row.urged + 1
    state = NoticeState.escalated if n > rules.escalate_after else NoticeState.urged
    text = f"第{n}次督促:{zh(NoticeType, row.kind)}逾期未{_verb(row.kind)}"
    h = _chain(row, now, state.value, state.value, "system", text)
    nxt = rules.add_working_hours(now, rules.urge_every_hours)
    return _moved(row, h, urged=n, next_urge_at=nxt, last_event=f"urge-{n}"), h


def _verb(kind: str) -> str:
    return "答复" if kind == NoticeType.supervision else "认领"


def delivery(row: NoticeRow, h: HistoryRow) -> Delivery:
    """The notification of a delivered, urged or escalated notice."""
    what = {"delivered": "notice", "urged": "urge", "escalated": "escalate"}[h.kind]
    return Delivery(row.notice_id, row.department, row.kind, what, h.seq, row.entity_id, row.text, row.deadline, h.at)


def row_of(d: dict[str, Any]) -> NoticeRow:
    """A ``notices`` row read back from ClickHouse (column → value)."""
    f = {k: d[k] for k in NoticeRow.__slots__ if k in d}
    for k in ("created_at", "deadline", "answered_at", "next_urge_at"):
        v = f.get(k)
        if isinstance(v, datetime) and v.tzinfo is None:
            f[k] = v.replace(tzinfo=LOCAL_TZ)
    return NoticeRow(**f)

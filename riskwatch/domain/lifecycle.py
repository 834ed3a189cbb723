"""The alert life cycle: a pure state machine with an injected clock.

States ``pending → firing → acknowledged → disposing → resolved → closed`` (as
:class:`schemas.events.AlertStatus`). Every change is recorded as a :class:`Transition` (time,
actor, comment). Policy — pending periods, hysteresis, flapping, deadlines, urging (督促) and
escalation back-off — is data (``riskwatch/data/lifecycle.yaml``).

Two parts, so per-entity state stays small and picklable:

* :class:`AlertLifecycle` — the state of one alert episode, a slotted dataclass (lives in the
  entity's state in the Faust table);
* :class:`Lifecycle` — the engine holding the policy; every method takes the state and the time
  (``float`` epoch seconds or an aware ``datetime``) and returns :class:`Notification` records.
  Nothing is sent, nothing sleeps, no wall clock is read.

>>> from riskwatch.domain.catalog import load_catalog
>>> lc = load_lifecycle(catalog=load_catalog())
>>> st, out = lc.open("a1", "E1", "rule.sensor.boiler_pressure", 8, "red", ["amr", "emergency"], at=0.0,
...                   title="锅炉超压", entity_name="舞阳县鑫源热力有限公司")
>>> st.status, [n.kind for n in out]
('firing', ['firing'])
>>> [n.kind for n in lc.tick(st, 3600.0)]           # item 8 red: acknowledge within 1 h
['urge']
>>> lc.on_feedback(st, "police", "acknowledged", 3700.0).rejected.split("，")[0].split(",")[0]
'部门 police(县公安局)不是该预警的接收单位'
>>> lc.on_feedback(st, "amr", "disposed", 3800.0).notifications[0].kind
'resolved'
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riskwatch.domain.catalog import Catalog, _line_for, load_catalog, load_yaml_with_lines
from riskwatch.settings import DATA_DIR
from schemas.vocabulary import FEEDBACK_ZH, LEVELS, OPEN_STATUSES, AlertStatus, Level, zh

FEEDBACK = ("acknowledged", "in_progress", "disposed", "not_ours")  # a receiving department's answers
OPEN = OPEN_STATUSES  # notified and not yet resolved
DEFAULT_LIFECYCLE_PATH = DATA_DIR / "lifecycle.yaml"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
LevelName = Literal["blue", "yellow", "orange", "red"]


# --- policy (data) ----------------------------------------------------------------------------------
class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hysteresis(_M):
    enter: float = Field(ge=0, le=100)
    exit: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> Hysteresis:
        if self.exit > self.enter:
            raise ValueError(f"exit ({self.exit}) must be <= enter ({self.enter})")
        return self


class Flapping(_M):
    max_changes: int = Field(ge=1)
    window_minutes: float = Field(gt=0)
    stable_minutes: float = Field(gt=0)


class Deadline(_M):
    ack_hours: float = Field(gt=0)
    dispose_hours: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Deadline:
        if self.dispose_hours < self.ack_hours:
            raise ValueError("dispose_hours must be >= ack_hours")
        return self


class Reminders(_M):
    base_minutes: dict[LevelName, float]
    factor: float = Field(ge=1)
    max_minutes: float = Field(gt=0)


class TransferPolicy(_M):
    """Case transfers (行刑衔接): the receiver accepts or declines within ``accept_hours``;
    without an answer it is urged, then urged again every ``remind_hours`` (the task-force
    office is told from the second urging on)."""

    accept_hours: float = Field(72, gt=0)
    remind_hours: float = Field(24, gt=0)


class LifecyclePolicy(_M):
    pending_minutes: dict[LevelName, float]
    hysteresis: Hysteresis
    flapping: Flapping
    close_grace_minutes: float = Field(ge=0)
    resolve_on_disposed: Literal["lead", "all", "any"] = "lead"
    deadlines: dict[LevelName, Deadline]
    item_deadlines: dict[int | str, dict[LevelName, Deadline]] = Field(default_factory=dict)
    reminders: Reminders
    max_transitions: int = Field(256, ge=8)
    transfer: TransferPolicy = TransferPolicy()

    @model_validator(mode="after")
    def _complete(self) -> LifecyclePolicy:
        for name in ("pending_minutes", "deadlines"):
            missing = [lv for lv in LEVELS if lv not in getattr(self, name)]
            if missing:
                raise ValueError(f"{name}: missing level(s) {', '.join(missing)}")
        if any(v < 0 for v in self.pending_minutes.values()):
            raise ValueError("pending_minutes must be >= 0")
        missing = [lv for lv in LEVELS if lv not in self.reminders.base_minutes]
        if missing:
            raise ValueError(f"reminders.base_minutes: missing level(s) {', '.join(missing)}")
        return self


class LifecycleError(ValueError):
    """A lifecycle policy file that is invalid; the message names line and field."""


# --- records ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Transition:
    """One recorded change. ``kind``: status | level | feedback | receivers | reminder | flapping |
    silence | notify (a notification sent: which kind, to whom)."""

    at: float
    kind: str
    from_status: str
    to_status: str
    actor: str
    comment: str = ""

    def to_data(self) -> list:
        """Data-only form (entity state on the changelog): the fields as one list."""
        return [self.at, self.kind, self.from_status, self.to_status, self.actor, self.comment]

    @classmethod
    def from_data(cls, data: list) -> Transition:
        if type(data) is not list or len(data) != 6 or type(data[0]) not in (int, float):
            raise ValueError("transition: not [at, kind, from, to, actor, comment]")
        return cls(*data)

    def as_dict(self) -> dict:
        return {
            "at": _iso(self.at),
            "kind": self.kind,
            "from": self.from_status,
            "to": self.to_status,
            "actor": self.actor,
            "comment": self.comment,
        }


@dataclass(slots=True)
class Notification:
    """A message to publish (``notices`` topic); the engine never sends it.

    ``kind``: firing | level_up | resolved | urge | escalate | not_ours | flapping | stable |
    silence_expired | receiver_added | released | case_transfer | transfer_urge | transfer_accepted |
    transfer_returned | merged.
    """

    kind: str
    departments: list[str]
    text_zh: str
    at: float
    alert_id: str = ""
    entity_id: str = ""
    level: str = ""
    status: str = ""

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "alert_id": self.alert_id,
            "entity_id": self.entity_id,
            "departments": list(self.departments),
            "text": self.text_zh,
            "level": self.level,
            "status": self.status,
            "at": _iso(self.at),
        }


@dataclass(slots=True)
class Silence:
    """A silence / maintenance window: every given matcher must hold (``rule`` is a glob)."""

    silence_id: str
    ends_at: float
    starts_at: float = 0.0
    entity_id: str | None = None
    item_id: int | None = None
    rule: str | None = None
    created_by: str = ""
    comment: str = ""

    def matches(self, st: AlertLifecycle, now: float) -> bool:
        if not (self.starts_at <= now < self.ends_at):
            return False
        if self.entity_id is not None and self.entity_id != st.entity_id:
            return False
        if self.item_id is not None and self.item_id != st.item_id:
            return False
        return self.rule is None or fnmatch.fnmatchcase(st.rule, self.rule)


@dataclass(slots=True)
class FeedbackOutcome:
    rejected: str | None = None  # reason (Chinese + codes) when the feedback is refused
    notifications: list[Notification] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.rejected is None


@dataclass(slots=True)
class AlertLifecycle:
    """State of one alert episode. Small, slotted, picklable; times are epoch seconds."""

    alert_id: str
    entity_id: str
    rule: str
    item_id: int | None
    level: str
    departments: list[str]  # every receiver, lead first
    title: str = ""
    entity_name: str = ""
    status: str = "pending"
    score: float = 0.0
    active: bool = True  # condition holds (hysteresis)
    opened_at: float = 0.0
    pending_since: float = 0.0
    fired_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    revision: int = 0  # +1 per recorded transition
    transitions: list = field(default_factory=list)
    dropped_transitions: int = 0
    responders: list = field(default_factory=list)  # receivers still responsible (minus not_ours)
    responses: dict = field(default_factory=dict)  # dept -> last feedback status
    ack_due: float | None = None
    ack_reminders: int = 0
    dispose_due: float | None = None
    dispose_reminders: int = 0
    changes: list = field(default_factory=list)  # times of recent active/inactive changes
    flapping: bool = False
    silence_id: str | None = None
    silence_ends: float = 0.0
    immediate: bool = False  # fires without the pending period (a confirmed fact, not a fluctuating signal)
    suppressed: int = 0  # notifications held back (silence, flapping)
    # case transfer (行刑衔接): receivers, state ('' | transferred | accepted | returned), deadline
    transfer_to: list = field(default_factory=list)
    transfer_status: str = ""
    transfer_due: float | None = None
    transfer_reminders: int = 0

    def __setstate__(self, state) -> None:
        setstate_with_defaults(self, state)

    def to_data(self) -> dict:
        """Data-only form (entity state on the changelog): field name -> value, transitions as lists.

        >>> lc = AlertLifecycle("a1", "E1", "rule.x", None, "yellow", ["amr"])
        >>> lc.transitions.append(Transition(1.0, "status", "pending", "firing", "engine"))
        >>> AlertLifecycle.from_data(lc.to_data()) == lc
        True
        """
        d = {name: getattr(self, name) for name in _LC_FIELDS}
        d["transitions"] = [t.to_data() for t in self.transitions]
        return d

    @classmethod
    def from_data(cls, data: dict) -> AlertLifecycle:
        """The lifecycle of :meth:`to_data`'s dict (fields it lacks take their defaults; unknown keys are
        ignored); ValueError if it is not one."""
        if type(data) is not dict:
            raise ValueError("alert lifecycle: not a dict")
        known = {k: v for k, v in data.items() if k in _LC_FIELDS}
        for name in _LC_LISTS:
            if name in known and type(known[name]) is not list:
                raise ValueError(f"alert lifecycle: {name} is not a list")
        if "responses" in known and type(known["responses"]) is not dict:
            raise ValueError("alert lifecycle: responses is not a dict")
        known["transitions"] = [Transition.from_data(t) for t in known.get("transitions", ())]
        try:
            return cls(**known)
        except TypeError as e:  # a required field missing
            raise ValueError(f"alert lifecycle: {e}") from e

    @property
    def lead(self) -> str:
        return self.departments[0]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


_LC_FIELDS = frozenset(f.name for f in dataclass_fields(AlertLifecycle))
_LC_LISTS = ("departments", "transitions", "responders", "changes", "transfer_to")


# --- the engine -------------------------------------------------------------------------------------
class Lifecycle:
    """The policy + the transition logic. Stateless itself: all state is in :class:`AlertLifecycle`."""

    def __init__(self, policy: LifecyclePolicy, catalog: Catalog):
        self.policy = policy
        self.catalog = catalog
        self.taskforce = catalog.taskforce_office
        codes = {i.code: i.id for i in catalog.items_list}
        # the policy's per-level tables, looked up by an alert's level code
        self._deadlines: dict[str, Deadline] = {lv: d for lv, d in policy.deadlines.items()}
        self._pending_minutes: dict[str, float] = {lv: m for lv, m in policy.pending_minutes.items()}
        self._reminder_minutes: dict[str, float] = {lv: m for lv, m in policy.reminders.base_minutes.items()}
        self._item_deadlines: dict[int | None, dict[str, Deadline]] = {}
        for key, per_level in policy.item_deadlines.items():
            iid = key if isinstance(key, int) else codes.get(key)
            if iid is None or iid not in catalog.items:
                raise LifecycleError(
                    f"item_deadlines: unknown item {key!r}; known ids {sorted(catalog.items)} "
                    f"or codes {', '.join(sorted(codes))}"
                )
            self._item_deadlines[iid] = {lv: d for lv, d in per_level.items()}

    # --- policy lookups -----------------------------------------------------------------------
    def deadline(self, item_id: int | None, level: str) -> Deadline:
        return self._item_deadlines.get(item_id, {}).get(level) or self._deadlines[level]

    def pending_minutes(self, level: str) -> float:
        """How long an alert of ``level`` stays pending before it fires (unless it is immediate)."""
        return self._pending_minutes[level]

    def reminder_interval(self, level: str, sent: int) -> float:
        """Seconds until the next reminder after ``sent`` (>= 1) reminders."""
        r = self.policy.reminders
        minutes = min(self._reminder_minutes[level] * r.factor ** (sent - 1), r.max_minutes)
        return minutes * 60.0

    # --- entry points -------------------------------------------------------------------------
    def open(
        self,
        alert_id: str,
        entity_id: str,
        rule: str,
        item_id: int | None,
        level: str,
        departments: Sequence[str],
        at: float | datetime,
        score: float = 100.0,
        title: str = "",
        entity_name: str = "",
        silences: Iterable[Silence] = (),
        immediate: bool = False,
    ) -> tuple[AlertLifecycle, list[Notification]]:
        """A new episode whose condition just entered (``score >= enter``): pending, or firing at once.

        ``immediate`` skips the pending period: for conditions already confirmed by their detector
        (a rule that needs several hits, an inspection finding, a complaint) rather than a signal
        that may go away by itself."""
        at = _ts(at)
        level = _level(level)
        if score < self.policy.hysteresis.enter:
            raise ValueError(f"score {score} is below the enter threshold {self.policy.hysteresis.enter}")
        if not departments:
            raise ValueError("an alert needs at least one receiving department")
        st = AlertLifecycle(
            alert_id=alert_id,
            entity_id=entity_id,
            rule=rule,
            item_id=item_id,
            level=level,
            departments=list(dict.fromkeys(departments)),
            title=title,
            entity_name=entity_name,
            score=score,
            opened_at=at,
            pending_since=at,
            immediate=immediate,
        )
        st.responders = list(st.departments)
        self._record(st, at, "status", "", "pending", "detector", f"score {score:g}")
        out: list[Notification] = []
        self._maybe_fire(st, at, out, list(silences))
        return st, out

    def observe(
        self,
        st: AlertLifecycle,
        at: float | datetime,
        score: float,
        level: str | None = None,
        departments: Sequence[str] | None = None,
        silences: Iterable[Silence] = (),
    ) -> list[Notification]:
        """A new evaluation of the alert's condition (score 0–100, optionally a new level/receivers)."""
        at, silences = _ts(at), list(silences)
        out: list[Notification] = []
        if st.status == "closed":
            return out
        self._refresh_silence(st, at, out, silences)
        st.score = score
        if departments:
            self._add_receivers(st, departments, at, "router", out, silences)
        if level is not None:
            self._change_level(st, _level(level), at, out, silences)
        h = self.policy.hysteresis
        was = st.active
        if score >= h.enter:
            st.active = True
        elif score < h.exit:
            st.active = False
        if st.status == "pending":
            if not st.active:
                self._set(st, at, "closed", "detector", f"待定期内恢复(score {score:g} < {h.exit:g}),未发出预警")
                st.closed_at = at
                return out
            self._maybe_fire(st, at, out, silences)
        elif st.status in OPEN and was and not st.active:
            self._set(st, at, "resolved", "detector", f"score {score:g} < {h.exit:g}")
            st.resolved_at = at
            self._flap(st, at, out, silences)
            self._emit(
                st, out, at, "resolved", st.departments, f"【预警解除】{self._desc(st)}:监测指标已恢复正常。", silences
            )
        elif st.status == "resolved" and st.active and not was:
            self._set(st, at, "firing", "detector", f"再次触发(score {score:g} >= {h.enter:g})")
            st.resolved_at = None
            self._start_timers(st, at)
            self._flap(st, at, out, silences)
            self._emit(
                st,
                out,
                at,
                "firing",
                st.departments,
                f"【{Level(st.level).zh}预警·再次触发】{self._desc(st)}",
                silences,
            )
        self._check_stable(st, at, out, silences)
        return out

    def tick(self, st: AlertLifecycle, now: float | datetime, silences: Iterable[Silence] = ()) -> list[Notification]:
        """Due actions at ``now``: firing after the pending period, urging, escalation, stability, closing."""
        now, silences = _ts(now), list(silences)
        out: list[Notification] = []
        if st.status == "closed":
            return out
        self._refresh_silence(st, now, out, silences)
        # Rows a deadline causes are recorded at the deadline, not at the timer's clock: a tick
        # replayed after a crash (later, on another clock) writes the same audit-chain rows.
        if st.status == "pending":
            if st.active:
                wait = 0.0 if st.immediate else self._pending_minutes[st.level] * 60
                self._maybe_fire(st, min(now, st.pending_since + wait), out, silences)
            return out
        self._check_stable(st, now, out, silences)
        self._transfer_reminder(st, now, out)
        if st.status in OPEN:
            self._reminder(st, now, "ack", out, silences)
            self._reminder(st, now, "dispose", out, silences)
        elif (
            st.status == "resolved"
            and not st.flapping
            and st.resolved_at is not None
            and now >= st.resolved_at + self.policy.close_grace_minutes * 60
            and st.transfer_status != "transferred"
        ):  # a transferred case stays until its receiver answers
            at = st.resolved_at + self.policy.close_grace_minutes * 60
            self._set(st, at, "closed", "system", f"解除后 {self.policy.close_grace_minutes:g} 分钟无复发,关闭")
            st.closed_at = at
        return out

    def on_feedback(
        self,
        st: AlertLifecycle,
        dept: str,
        status: str,
        at: float | datetime,
        comment: str = "",
        silences: Iterable[Silence] = (),
        user: str = "",
    ) -> FeedbackOutcome:
        """A department's feedback (督促反馈). Only receivers of this alert may give feedback.
        The recorded actor is ``dept/user`` when a person is named, else the department."""
        at, silences, res = _ts(at), list(silences), FeedbackOutcome()
        status = str(status)
        out = res.notifications
        if status not in FEEDBACK:
            res.rejected = f"未知反馈状态 {status!r}(unknown feedback status; known: {', '.join(FEEDBACK)})"
            return res
        if dept not in st.departments:
            res.rejected = (
                f"部门 {dept}({self._dname(dept)})不是该预警的接收单位,反馈不予受理"
                f"(not a receiver of alert {st.alert_id}; receivers: {', '.join(st.departments)})"
            )
            return res
        if st.status == "pending":
            res.rejected = f"预警 {st.alert_id} 尚未发出(pending),不接受反馈"
            return res
        if st.status == "closed":
            res.rejected = f"预警 {st.alert_id} 已关闭(closed),不接受反馈"
            return res
        if dept not in st.responders:
            res.rejected = f"部门 {dept}({self._dname(dept)})已反馈非本部门职责(not_ours),不再接受其反馈"
            return res
        self._refresh_silence(st, at, out, silences)
        st.responses[dept] = status
        actor = f"{dept}/{user}" if user else dept
        self._record(
            st, at, "feedback", st.status, st.status, actor, f"{status}({FEEDBACK_ZH[status]}) {comment}".strip()
        )
        if status == "not_ours":
            st.responders.remove(dept)
            if not st.responders:
                st.responders.append(self.taskforce)
                if self.taskforce not in st.departments:
                    st.departments.append(self.taskforce)
            self._emit(
                st,
                out,
                at,
                "not_ours",
                [self.taskforce],
                f"【待研判】{self._desc(st)}:{self._dname(dept)}反馈非本部门职责"
                + (f"(理由:{comment})" if comment else "")
                + ",请专班办公室研判确定责任部门。",
                silences,
            )
        elif status == "acknowledged":
            if st.status == "firing":
                self._set(st, at, "acknowledged", actor, comment)
        elif status == "in_progress":
            if st.status in ("firing", "acknowledged"):
                self._set(st, at, "disposing", actor, comment)
        elif status == "disposed" and st.status in OPEN:
            if not self._dispose_waiting(st):
                self._set(st, at, "resolved", actor, comment or "部门反馈处置完毕")
                st.resolved_at = at
                st.active = False
                self._emit(
                    st,
                    out,
                    at,
                    "resolved",
                    st.departments,
                    f"【预警解除】{self._desc(st)}:{self._dname(dept)}反馈处置完毕。",
                    silences,
                )
            elif st.status in ("firing", "acknowledged"):
                self._set(st, at, "disposing", actor, comment)
        return res

    def reassign(
        self,
        st: AlertLifecycle,
        by: str,
        to: Sequence[str],
        at: float | datetime,
        reason: str,
        silences: Iterable[Silence] = (),
        user: str = "",
    ) -> FeedbackOutcome:
        """The task-force office decides who is responsible (专班研判改派), typically after a 非本部门.

        ``to`` become receivers that must respond, their deadlines starting now; the departments
        that answered not_ours (and are not in ``to``) are released: no longer receivers, and told so
        (``released``: who is responsible now, the reason, no further action). If the lead is
        released, the first of ``to`` leads. The office itself stops being a responder if it only
        held the alert because everyone refused it (released too, but not told: it decided).
        Only ``by`` = the office may do this.

        >>> from riskwatch.domain.catalog import load_catalog
        >>> lc = load_lifecycle(catalog=load_catalog())
        >>> st, _ = lc.open("a1", "E1", "rule.x", 1, "orange", ["amr", "emergency"], at=0.0, immediate=True)
        >>> _ = lc.on_feedback(st, "amr", "not_ours", 60.0, "不属本局")
        >>> res = lc.reassign(st, "taskforce", ["agri"], 120.0, "属农业农村局职责", user="王五")
        >>> notices = [(n.kind, n.departments) for n in res.notifications]
        >>> st.departments, notices, st.transitions[-4].actor
        (['agri', 'emergency'], [('released', ['amr']), ('receiver_added', ['agri'])], 'taskforce/王五')
        >>> print(res.notifications[0].text_zh.replace(",", ",\\n"))  # one clause a line
        【橙色预警·专班改派】E1:rule.x(预警编号 a1):经专班办公室研判,
        已改由县农业农村局负责(理由:属农业农村局职责),
        县市场监管局无需继续处置。
        >>> lc.reassign(st, "amr", ["police"], 180.0, "x").rejected.split("(")[0]
        '只有专班办公室可以改派责任部门'
        """
        at, silences, res = _ts(at), list(silences), FeedbackOutcome()
        to = list(dict.fromkeys(to))
        if by != self.taskforce:
            res.rejected = (
                f"只有专班办公室可以改派责任部门(only the task-force office {self.taskforce!r} may "
                f"reassign alert {st.alert_id}; sent by {by!r})"
            )
        elif st.status not in OPEN:
            res.rejected = (
                f"预警 {st.alert_id} 当前状态为{zh(AlertStatus, st.status)}({st.status}),"
                f"不能改派(only open alerts can be reassigned)"
            )
        elif not to:
            res.rejected = f"改派须指定责任部门(reassign needs assign_to; alert {st.alert_id})"
        elif unknown := [d for d in to if d not in self.catalog.departments]:
            res.rejected = (
                f"未知部门 {', '.join(unknown)}(unknown department code; known: {', '.join(self.catalog.departments)})"
            )
        elif not reason.strip():
            res.rejected = f"改派须说明理由(reassign needs the reason in comment; alert {st.alert_id})"
        elif not (new := [d for d in to if d not in st.responders]):
            res.rejected = f"{'、'.join(self._dname(d) for d in to)}已是该预警的责任部门,无需改派(already responsible)"
        if res.rejected:
            return res
        self._refresh_silence(st, at, res.notifications, silences)
        actor = f"{by}/{user}" if user else by
        released = [d for d in st.departments if st.responses.get(d) == "not_ours" and d not in to]
        if st.responders == [self.taskforce] and self.taskforce not in to and st.responses.get(self.taskforce) is None:
            st.responders.remove(self.taskforce)  # it only held the alert because every receiver refused it
            released.append(self.taskforce)
        lead_released = st.lead in released
        kept = [d for d in st.departments if d not in released and d not in new]
        st.departments = [*new, *kept] if lead_released else [*kept, *new]
        for d in new:
            st.responses.pop(d, None)  # assigned back after its own not_ours: it must answer again
        st.responders = [*new, *st.responders] if lead_released else [*st.responders, *new]
        self._record(
            st,
            at,
            "feedback",
            st.status,
            st.status,
            actor,
            f"reassign({FEEDBACK_ZH['reassign']}) → {','.join(new)}:{reason.strip()}",
        )
        self._record(
            st,
            at,
            "receivers",
            st.status,
            st.status,
            actor,
            " ".join([f"+{','.join(new)}", *([f"-{','.join(released)}"] if released else [])]),
        )
        self._start_timers(st, at)  # the new department's 签收/处置 deadlines start now
        dl = self.deadline(st.item_id, st.level)
        head = f"【{Level(st.level).zh}预警·专班改派】{self._desc(st)}:经专班办公室研判,"
        who = f"{'、'.join(self._dname(x) for x in new)}负责(理由:{reason.strip()})"
        # released first: the alert's latest revision (its headline in the workbench) is then who is
        # responsible now, not the notice meant only for the departments let go
        if told := [x for x in released if x != by]:  # the office decided: it is not told its own decision
            self._emit(
                st,
                res.notifications,
                at,
                "released",
                told,
                f"{head}已改由{who},{'、'.join(self._dname(x) for x in told)}无需继续处置。",
                silences,
            )
        self._emit(
            st,
            res.notifications,
            at,
            "receiver_added",
            new,
            f"{head}由{who}。请于{_h(dl.ack_hours)}内签收、{_h(dl.dispose_hours)}内反馈处置结果。",
            silences,
        )
        return res

    def merge(
        self,
        st: AlertLifecycle,
        by: str,
        at: float | datetime,
        comment: str,
        silences: Iterable[Silence] = (),
        user: str = "",
    ) -> FeedbackOutcome:
        """The task-force office merges a clue into this alert (专班研判合并): an unmatched complaint, a
        low-confidence alert, a dispute … joins the case. ``comment`` names the clue (its kind and id) and
        the reason (masked by the caller). Recorded on the alert (a ``feedback`` row, status unchanged); the
        departments still responsible are told (``merged``), except the office itself (it decided). A
        pending alert records the row only (its receivers hear of it when it fires); a closed one refuses.
        Only ``by`` = the office may do this.

        >>> from riskwatch.domain.catalog import load_catalog
        >>> lc = load_lifecycle(catalog=load_catalog())
        >>> st, _ = lc.open("a1", "E1", "rule.x", 1, "orange", ["amr", "emergency"], at=0.0, immediate=True)
        >>> res = lc.merge(st, "taskforce", 60.0, "专班研判合并:未匹配投诉 Q-1:同一地址", user="王五")
        >>> [(n.kind, n.departments) for n in res.notifications], st.status, st.transitions[-2].comment
        ([('merged', ['amr', 'emergency'])], 'firing', 'merged(合并线索) 专班研判合并:未匹配投诉 Q-1:同一地址')
        >>> res.notifications[0].text_zh.split(":", 2)[2]
        '经专班办公室研判,新线索并入本预警:未匹配投诉 Q-1:同一地址。请一并核查处置。'
        >>> lc.merge(st, "amr", 90.0, "x").rejected.split("(")[0]
        '只有专班办公室可以合并线索'
        """
        at, silences, res = _ts(at), list(silences), FeedbackOutcome()
        comment = comment.strip()
        if by != self.taskforce:
            res.rejected = (
                f"只有专班办公室可以合并线索(only the task-force office {self.taskforce!r} may merge a clue "
                f"into alert {st.alert_id}; sent by {by!r})"
            )
        elif st.status == "closed":
            res.rejected = (
                f"预警 {st.alert_id} 已关闭(closed),不能合并线索(a clue merges only into an alert not closed)"
            )
        elif not comment:
            res.rejected = f"合并须写明线索和理由(merged needs the clue and the reason in comment; alert {st.alert_id})"
        if res.rejected:
            return res
        self._refresh_silence(st, at, res.notifications, silences)
        actor = f"{by}/{user}" if user else by
        self._record(st, at, "feedback", st.status, st.status, actor, f"merged({FEEDBACK_ZH['merged']}) {comment}")
        told = [d for d in st.responders if d != by]
        if told and st.status != "pending":
            self._emit(
                st,
                res.notifications,
                at,
                "merged",
                told,
                f"【{Level(st.level).zh}预警·{FEEDBACK_ZH['merged']}】{self._desc(st)}:经专班办公室研判,"
                f"新线索并入本预警:{comment.removeprefix('专班研判合并:')}。"
                + ("请一并核查处置。" if st.status in OPEN else "请核查是否需要重新处置。"),
                silences,
            )
        return res

    def add_receiver(
        self,
        st: AlertLifecycle,
        dept: str,
        at: float | datetime,
        actor: str,
        comment: str = "",
        silences: Iterable[Silence] = (),
    ) -> list[Notification]:
        """The task-force office assigns a department (e.g. after a not_ours); it must respond too."""
        at = _ts(at)
        out: list[Notification] = []
        if dept not in self.catalog.departments:
            raise ValueError(f"unknown department code {dept!r}")
        self._add_receivers(st, [dept], at, actor, out, list(silences), comment)
        return out

    def record(self, st: AlertLifecycle, at: float | datetime, kind: str, actor: str, comment: str) -> None:
        """Record a change that is not a status change (e.g. the evidence bundle sealed again)."""
        self._record(st, _ts(at), kind, st.status, st.status, actor, comment)

    def transfer(
        self, st: AlertLifecycle, to: Sequence[str], at: float | datetime, reasons: str, evidence_hash: str
    ) -> list[Notification]:
        """Transfer the case (案件移送) to ``to`` (police first): recorded, and told to them now."""
        at = _ts(at)
        out: list[Notification] = []
        new = [d for d in to if d not in st.transfer_to]
        if not new:
            return out
        for d in new:
            if d not in self.catalog.departments:
                raise ValueError(f"unknown department code {d!r} for a case transfer")
        st.transfer_to.extend(new)
        st.transfer_status = "transferred"
        st.transfer_due = at + self.policy.transfer.accept_hours * 3600
        st.transfer_reminders = 0
        names = "、".join(f"{self._dname(d)}({d})" for d in new)
        self._record(
            st,
            at,
            "transfer",
            st.status,
            "transferred",
            "router",
            f"案件移送 → {','.join(new)}:{reasons};证据包 sha256:{evidence_hash}",
        )
        out.append(
            Notification(
                kind="case_transfer",
                departments=new,
                at=at,
                alert_id=st.alert_id,
                entity_id=st.entity_id,
                level=st.level,
                status=st.status,
                text_zh=f"【涉嫌犯罪案件移送】{self._desc(st)}:{reasons}。移送{names},"
                f"请于{_h(self.policy.transfer.accept_hours)}内反馈是否受理。证据包 sha256:{evidence_hash}",
            )
        )
        self._record(st, at, "notify", st.status, st.status, "riskwatch", f"case_transfer → {','.join(new)}")
        return out

    def on_transfer_feedback(
        self,
        st: AlertLifecycle,
        dept: str,
        status: str,
        at: float | datetime,
        comment: str = "",
        user: str = "",
    ) -> FeedbackOutcome:
        """The transfer's receiver accepts (受理) or declines (不予受理, with a reason): a decline
        returns the case to the lead department, told with the reason. The actor recorded is
        ``<dept>/<user>`` when the person is known (the workbench fills ``user``), else ``dept``."""
        at, res = _ts(at), FeedbackOutcome()
        actor = f"{dept}/{user}" if user else dept
        if dept not in st.transfer_to:
            res.rejected = (
                f"部门 {dept}({self._dname(dept)})不是该案件的移送对象"
                f"(not a case-transfer receiver of alert {st.alert_id}; "
                f"receivers: {', '.join(st.transfer_to) or 'none'})"
            )
            return res
        if st.transfer_status not in ("transferred",):
            res.rejected = f"案件 {st.alert_id} 移送状态为 {st.transfer_status or '未移送'},不接受 {status} 反馈"
            return res
        if status == "declined" and not comment.strip():
            res.rejected = (
                f"不予受理须说明理由(declining a case transfer needs the reason in comment; alert {st.alert_id})"
            )
            return res
        st.transfer_due = None
        if status == "accepted":
            st.transfer_status = "accepted"
            self._record(st, at, "transfer", "transferred", "accepted", actor, f"受理 {comment}".strip())
            res.notifications.append(
                Notification(
                    kind="transfer_accepted",
                    departments=[st.lead],
                    at=at,
                    alert_id=st.alert_id,
                    entity_id=st.entity_id,
                    level=st.level,
                    status=st.status,
                    text_zh=f"【移送案件已受理】{self._desc(st)}:{self._dname(dept)}已受理。",
                )
            )
        else:
            self._record(st, at, "transfer", "transferred", "declined", actor, f"不予受理:{comment}")
            st.transfer_status = "returned"
            self._record(
                st,
                at,
                "transfer",
                "declined",
                "returned",
                "system",
                f"退回牵头单位 {st.lead}({self._dname(st.lead)}),理由:{comment}",
            )
            res.notifications.append(
                Notification(
                    kind="transfer_returned",
                    departments=[st.lead],
                    at=at,
                    alert_id=st.alert_id,
                    entity_id=st.entity_id,
                    level=st.level,
                    status=st.status,
                    text_zh=f"【移送案件退回】{self._desc(st)}:{self._dname(dept)}不予受理,理由:{comment}。请牵头单位依法继续处理。",
                )
            )
        self._record(st, at, "notify", st.status, st.status, "riskwatch", f"{res.notifications[0].kind} → {st.lead}")
        return res

    def _transfer_reminder(self, st, now, out) -> None:
        due = st.transfer_due
        if due is None or now < due or st.transfer_status != "transferred":
            return
        sent = st.transfer_reminders
        to = list(st.transfer_to) + ([self.taskforce] if sent >= 1 and self.taskforce not in st.transfer_to else [])
        out.append(
            Notification(
                kind="transfer_urge",
                departments=to,
                at=due,
                alert_id=st.alert_id,
                entity_id=st.entity_id,
                level=st.level,
                status=st.status,
                text_zh=f"【移送案件督促·第{sent + 1}次】{self._desc(st)}:移送后"
                f"{_h(self.policy.transfer.accept_hours)}内未反馈是否受理,请尽快反馈。",
            )
        )
        st.transfer_reminders = sent + 1
        # recorded at the deadline itself (not the timer's clock): a replay writes the same row
        self._record(st, due, "reminder", st.status, st.status, "system", f"transfer urge #{sent + 1}: {','.join(to)}")
        st.transfer_due = due + self.policy.transfer.remind_hours * 3600

    # --- internals ----------------------------------------------------------------------------
    def _add_receivers(self, st, depts, at, actor, out, silences, comment="") -> None:
        new = [d for d in depts if d not in st.departments]
        if not new:
            return
        st.departments.extend(new)
        for d in new:
            st.responders.append(d)
        self._record(st, at, "receivers", st.status, st.status, actor, f"+{','.join(new)} {comment}".strip())
        if st.status in OPEN:
            self._emit(
                st,
                out,
                at,
                "receiver_added",
                new,
                f"【{Level(st.level).zh}预警·指派】{self._desc(st)}:请贵单位签收处置。",
                silences,
            )

    def _change_level(self, st, level, at, out, silences) -> None:
        if level == st.level:
            return
        up = LEVELS.index(level) > LEVELS.index(st.level)
        old = st.level
        st.level = level
        self._record(
            st, at, "level", st.status, st.status, "detector", f"{old}→{level}({Level(old).zh}→{Level(level).zh})"
        )
        if not up or st.status not in OPEN:
            return
        d = self.deadline(st.item_id, level)  # deadlines never get longer, and tighten with the level
        if st.ack_due is not None and st.ack_reminders == 0:
            st.ack_due = min(st.ack_due, at + d.ack_hours * 3600)
        if st.dispose_due is not None and st.dispose_reminders == 0:
            st.dispose_due = min(st.dispose_due, at + d.dispose_hours * 3600)
        self._emit(
            st,
            out,
            at,
            "level_up",
            st.departments,
            f"【预警级别上调 {Level(old).zh}→{Level(level).zh}】{self._desc(st)}",
            silences,
        )

    def _maybe_fire(self, st, at, out, silences) -> None:
        wait = 0.0 if st.immediate else self._pending_minutes[st.level] * 60
        if at < st.pending_since + wait:
            return
        self._set(st, at, "firing", "detector", f"待定期 {wait / 60:g} 分钟已满" if wait else "立即发出")
        st.fired_at = at
        self._start_timers(st, at)
        d = self.deadline(st.item_id, st.level)
        self._emit(
            st,
            out,
            at,
            "firing",
            st.departments,
            f"【{Level(st.level).zh}预警】{self._desc(st)}。请于{_h(d.ack_hours)}内签收、{_h(d.dispose_hours)}内反馈处置结果。",
            silences,
        )

    def _start_timers(self, st, at) -> None:
        d = self.deadline(st.item_id, st.level)
        st.ack_due, st.ack_reminders = at + d.ack_hours * 3600, 0
        st.dispose_due, st.dispose_reminders = at + d.dispose_hours * 3600, 0

    def _ack_waiting(self, st) -> list[str]:
        return [d for d in st.responders if d not in st.responses]

    def _dispose_waiting(self, st) -> list[str]:
        if st.status not in OPEN:
            return []
        waiting = [d for d in st.responders if st.responses.get(d) != "disposed"]
        mode = self.policy.resolve_on_disposed
        if mode == "any":
            return [] if any(st.responses.get(d) == "disposed" for d in st.responders) else waiting
        if mode == "lead" and st.lead in st.responders:
            return [st.lead] if st.lead in waiting else []
        return waiting

    def _reminder(self, st, now, stage, out, silences) -> None:
        due = getattr(st, f"{stage}_due")
        if due is None or now < due:
            return
        waiting = self._ack_waiting(st) if stage == "ack" else self._dispose_waiting(st)
        if not waiting:
            setattr(st, f"{stage}_due", None)
            return
        sent = getattr(st, f"{stage}_reminders")
        d = self.deadline(st.item_id, st.level)
        what = f"签收时限{_h(d.ack_hours)}" if stage == "ack" else f"处置时限{_h(d.dispose_hours)}"
        names = "、".join(f"{self._dname(x)}({x})" for x in waiting)
        if sent == 0:
            self._emit(st, out, due, "urge", waiting, f"【督促】{self._desc(st)}:已超过{what},请尽快反馈。", silences)
        else:
            self._emit(
                st,
                out,
                due,
                "escalate",
                [self.taskforce],
                f"【升级督办·第{sent}次】{self._desc(st)}:{names}超过{what}仍未反馈,请专班办公室督办。",
                silences,
            )
        sent += 1
        setattr(st, f"{stage}_reminders", sent)
        setattr(st, f"{stage}_due", max(due, now) + self.reminder_interval(st.level, sent))
        self._record(
            st,
            due,
            "reminder",
            st.status,
            st.status,
            "system",
            f"{stage} {'urge' if sent == 1 else 'escalate'} #{sent}: {','.join(waiting)}",
        )

    def _flap(self, st, at, out, silences) -> None:
        f = self.policy.flapping
        st.changes.append(at)
        horizon = at - f.window_minutes * 60
        st.changes = [t for t in st.changes if t >= horizon]
        if not st.flapping and len(st.changes) > f.max_changes:
            st.flapping = True
            self._record(
                st,
                at,
                "flapping",
                st.status,
                st.status,
                "system",
                f"{len(st.changes)} changes in {f.window_minutes:g} min",
            )
            self._emit(
                st,
                out,
                at,
                "flapping",
                st.departments,
                f"【预警抖动】{self._desc(st)}:{f.window_minutes:g}分钟内状态变化{len(st.changes)}次,"
                f"暂停通知,稳定{f.stable_minutes:g}分钟后恢复。",
                silences,
                force=True,
            )

    def _check_stable(self, st, now, out, silences) -> None:
        if not st.flapping or not st.changes:
            return
        if now - st.changes[-1] >= self.policy.flapping.stable_minutes * 60:
            now = st.changes[-1] + self.policy.flapping.stable_minutes * 60  # the moment it became stable
            st.flapping = False
            st.changes = []
            self._record(st, now, "flapping", st.status, st.status, "system", "stable")
            self._emit(
                st,
                out,
                now,
                "stable",
                st.departments,
                f"【预警已稳定】{self._desc(st)}:当前状态{AlertStatus(st.status).zh}。",
                silences,
                force=True,
            )

    def _refresh_silence(self, st, now, out, silences) -> None:
        s = next((s for s in silences if s.matches(st, now)), None)
        if s is not None:
            if st.silence_id != s.silence_id:
                self._record(
                    st,
                    now,
                    "silence",
                    st.status,
                    st.status,
                    s.created_by or "system",
                    f"silenced by {s.silence_id} until {_iso(s.ends_at)} {s.comment}".strip(),
                )
            st.silence_id, st.silence_ends = s.silence_id, s.ends_at
            return
        if st.silence_id is None:
            return
        ended = st.silence_id
        st.silence_id, st.silence_ends = None, 0.0
        self._record(st, now, "silence", st.status, st.status, "system", f"silence {ended} ended")
        if st.status in OPEN:
            self._emit(
                st,
                out,
                now,
                "silence_expired",
                st.departments,
                f"【静默期结束】{self._desc(st)}:预警仍未解除,当前状态{AlertStatus(st.status).zh}。",
                [],
            )

    def _emit(self, st, out, at, kind, depts, text, silences, force: bool = False) -> None:
        s = next((s for s in silences if s.matches(st, at)), None)
        if s is not None:
            st.silence_id, st.silence_ends = s.silence_id, s.ends_at
            st.suppressed += 1
            return
        if st.flapping and not force:
            st.suppressed += 1
            return
        out.append(
            Notification(
                kind=kind,
                departments=list(depts),
                text_zh=text,
                at=at,
                alert_id=st.alert_id,
                entity_id=st.entity_id,
                level=st.level,
                status=st.status,
            )
        )
        self._record(st, at, "notify", st.status, st.status, "riskwatch", f"{kind} → {','.join(depts)}")

    def _set(self, st, at, to, actor, comment) -> None:
        self._record(st, at, "status", st.status, to, actor, comment)
        st.status = to

    def _record(self, st, at, kind, frm, to, actor, comment) -> None:
        st.transitions.append(Transition(at=at, kind=kind, from_status=frm, to_status=to, actor=actor, comment=comment))
        st.revision += 1
        extra = len(st.transitions) - self.policy.max_transitions
        if extra > 0:
            del st.transitions[:extra]
            st.dropped_transitions += extra

    def _dname(self, code: str) -> str:
        d = self.catalog.departments.get(code)
        return d.name if d else code

    def _desc(self, st) -> str:
        who = st.entity_name or st.entity_id
        return f"{who}:{st.title or st.rule}(预警编号 {st.alert_id})"


# --- helpers ----------------------------------------------------------------------------------------
def setstate_with_defaults(obj, state) -> None:
    """Unpickle a slotted dataclass pickled by an older version (fewer fields): the fields it
    lacks take their defaults (the generated ``__setstate__`` would leave them unset)."""
    from dataclasses import MISSING, fields

    if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
        state = {**(state[0] or {}), **(state[1] or {})}  # object's default: (dict, slots)
    if not isinstance(state, dict):
        state = {f.name: v for f, v in zip(fields(obj), state, strict=False)}  # an older version: fewer fields
    for f in fields(obj):
        if f.name in state:
            v = state[f.name]
        elif f.default_factory is not MISSING:
            v = f.default_factory()
        else:
            v = f.default
        object.__setattr__(obj, f.name, v)


def to_epoch(t: float | datetime) -> float:
    """Epoch seconds of a time given as epoch seconds or a datetime (naive = Asia/Shanghai)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=LOCAL_TZ)
        return t.timestamp()
    return float(t)


_ts = to_epoch


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).astimezone(LOCAL_TZ).isoformat()


def _level(v) -> str:
    v = str(v)
    if v not in LEVELS:
        raise ValueError(f"unknown level {v!r}; known: {', '.join(LEVELS)}")
    return v


def _h(hours: float) -> str:
    return f"{hours / 24:g}天" if hours >= 48 and hours % 24 == 0 else f"{hours:g}小时"


def load_policy(path: Path | str | None = None) -> LifecyclePolicy:
    path = Path(path) if path else DEFAULT_LIFECYCLE_PATH
    raw, lines = load_yaml_with_lines(path, LifecycleError)
    raw = raw or {}
    try:
        return LifecyclePolicy.model_validate(raw)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = tuple(err["loc"])
            msgs.append(
                f"{path.name} line {_line_for(lines, loc)} ({'.'.join(map(str, loc)) or '<top>'}): {err['msg']}"
            )
        raise LifecycleError("invalid lifecycle policy:\n  " + "\n  ".join(msgs)) from None


def load_lifecycle(path: Path | str | None = None, catalog: Catalog | None = None) -> Lifecycle:
    """The engine with the policy from ``path`` (default ``riskwatch/data/lifecycle.yaml``)."""
    return Lifecycle(load_policy(path), catalog or load_catalog())

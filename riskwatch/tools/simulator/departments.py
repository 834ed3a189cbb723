"""The departments, simulated: they acknowledge, dispose, say "not ours", and sometimes miss deadlines.

:class:`DepartmentPlayer` reads alert revisions (as published on ``alerts.all``) and answers with
:class:`~schemas.events.DisposalFeedback` events (``events.feedback``), like the county's
departments would: the lead department (牵头单位) acknowledges (签收), starts disposal (处置中) and
reports the result (处置完毕); cooperating departments (配合单位) mostly acknowledge, sometimes
report that they are assisting, and occasionally one answers ``not_ours`` (非本部门职责).

Time is *simulated*: feedback is scheduled relative to the alert's ``first_seen`` (the simulated
moment it fired), with delays drawn as fractions of the deadlines of
``riskwatch/data/lifecycle.yaml`` for the alert's item and level (:meth:`Lifecycle.deadline
<riskwatch.domain.lifecycle.Lifecycle.deadline>`). When the revision carries the pipeline's own
``ack_due`` / ``dispose_due``, those are the deadlines and the alert is taken to have fired
``ack_hours`` before ``ack_due`` (later than ``first_seen`` when it waited out a pending period).
The wall clock is never read: the caller says what "now" is (``due(now)``), e.g. the latest
``last_seen`` of the alerts it has seen.

A lead department's 已处置 carries the outcome (``DisposalOutcome``): ``oracle(alert)`` when the caller knows the
ground truth (``riskwatch eval feedback`` does), else :func:`default_outcome` (a rule's alert confirmed with
责令整改; a model's alert a sensor-fault 误报 one time in three).

Per receiving department (independently, per alert):

* with probability ``silent_rate`` it never responds (the pipeline urges, then escalates);
* with probability ``late_rate`` it responds only after the acknowledgement deadline has passed
  (1.1–2.5 × ``ack_hours`` after ``first_seen``: after the urging notice, often after escalation);
* otherwise its first answer comes within 5–85 % of ``ack_hours``; an on-time lead department
  also reports disposal before ``dispose_hours``.

Per alert, with probability ``not_ours_rate`` one cooperating department (never the lead, never
the task-force office) answers ``not_ours`` instead of acknowledging, and with probability
``unauthorised_rate`` a department that is NOT a receiver sends an acknowledgement — the pipeline
must refuse it to the dead-letter topic. Its ``event_id`` starts with ``fbx-`` (normal feedback:
``fb-``), see :meth:`DepartmentPlayer.is_unauthorised`; :meth:`DepartmentPlayer.truth` is the
ground truth of every department's planned behaviour.

Later revisions: a revision that is ``resolved`` or ``closed`` cancels what is still scheduled for
that alert; a revision that adds receivers (e.g. a red level adds the task-force office) schedules
the new departments relative to that revision's ``last_seen``; an alert that is open again after
being resolved starts a new round. Revisions older than one already seen are ignored, and alerts
first seen resolved/closed are ignored.

Everything random comes from a ``random.Random`` seeded with ``(seed, alert_id, round)``, so the
same seed and the same alerts give byte-identical feedback — whatever order the alerts of
different entities arrive in (they come from several partitions).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from riskwatch.domain.catalog import Catalog
from riskwatch.domain.lifecycle import Lifecycle, load_lifecycle, to_epoch
from schemas.events import Alert

__all__ = ["DepartmentPlayer", "FollowUpPlayer", "OrderPlay", "Plan", "CST"]

CST = timezone(timedelta(hours=8))  # county local time (Asia/Shanghai has no DST)
OPEN_STATUSES = ("firing", "acknowledged", "disposing")
DONE_STATUSES = ("resolved", "closed")
Role = Literal["lead", "cooperating", "outsider"]
Behaviour = Literal["on_time", "late", "silent"]

# --- Chinese texts (picked by the seeded RNG) -----------------------------------------------------
ACK_COMMENTS = (
    "已签收,已安排执法人员赶赴现场核查。",
    "已签收,正在联系企业负责人核实情况。",
    "收到预警,已派员到场检查。",
    "已签收,将在时限内反馈处置结果。",
)
LATE_ACK_COMMENTS = (
    "已签收。因人员外出执法未能及时签收,已安排专人跟进。",
    "收到督促通知,已签收并立即安排核查。",
    "已签收,前期值班人员未及时处理,现已落实责任人。",
)
PROGRESS_COMMENTS = (
    "执法人员已到达现场,正在核查处置。",
    "已责令企业立即整改,正在跟踪整改情况。",
    "已会同相关部门开展联合检查。",
    "已对涉事产品和设备采取控制措施,正在调查原因。",
)
COOP_PROGRESS_COMMENTS = (
    "配合牵头单位开展现场检查。",
    "已派员协助牵头单位处置。",
    "正在按职责开展配合调查。",
)
DISPOSED_COMMENTS = ("处置完毕,申请解除预警。", "已处置完毕,请予核销。")
DISPOSED_RESULTS = (
    "经现场核查情况属实,已责令企业停业整改,整改完成后复查合格。",
    "已督促企业更换故障设备并复测,各项指标恢复正常。",
    "经核查系设备故障误报,已要求企业校准传感器并加强日常巡检,风险已排除。",
    "已依法立案调查,涉事产品已封存,企业已完成整改。",
    "已约谈企业负责人,完成隐患整改并留存影像资料,下周回访复查。",
)
NOT_OURS_COMMENTS = (
    "该事项不属于本部门监管职责,建议由牵头单位处置。",
    "经核实,该主体不在本部门监管范围内。",
    "该风险点属于其他部门职责范围,请专班办公室研判。",
)


@dataclass(slots=True)
class Plan:
    """Ground truth for one department's response to one alert (one round)."""

    alert_id: str
    entity_id: str
    department: str
    role: Role
    behaviour: Behaviour
    answer: str  # first status it sends: acknowledged | not_ours ("" when silent)
    level: str
    item_id: int | None
    anchor: str  # ISO time the delays count from (first_seen, or the revision that added it)
    ack_deadline: str
    dispose_deadline: str
    round: int = 1
    event_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class _Entry:
    ts: int
    alert_id: str
    payload: dict
    plan: Plan
    first: bool  # the plan's first feedback (counts the plan as "late" when it is late)


@dataclass(slots=True)
class _AlertState:
    revision: int
    status: str
    round: int
    departments: list[str]  # receivers with a plan in the current round
    pending: set[str] = field(default_factory=set)  # event ids still scheduled


class DepartmentPlayer:
    """Plays the receiving departments of alerts: seeded, pure, no I/O, no wall clock.

    Parameters
    ----------
    seed
        Random seed; same seed + same alerts → byte-identical feedback.
    late_rate
        Probability that a receiving department answers only after the acknowledgement deadline.
    silent_rate
        Probability that a receiving department never answers.
    unauthorised_rate
        Probability per alert of one feedback from a department that is not a receiver.
    not_ours_rate
        Probability per alert (with cooperating departments) that one of them answers ``not_ours``.
    lifecycle
        The deadline policy (default: :func:`riskwatch.domain.lifecycle.load_lifecycle`).
    catalog
        Departments to pick outsiders from (default: the lifecycle's catalog).

    Examples
    --------
    >>> from datetime import datetime
    >>> from riskwatch.tools.simulator.departments import CST, DepartmentPlayer
    >>> t0 = datetime(2026, 3, 2, 8, 0, tzinfo=CST)
    >>> alert = {"alert_id": "a1", "revision": 1, "fingerprint": "E1|8|rule.sensor.boiler_pressure",
    ...          "entity_id": "E1", "item_id": 8, "rule": "rule.sensor.boiler_pressure", "level": "red",
    ...          "level_zh": "红色", "status": "firing", "score": 95, "title": "锅炉超压", "message": "锅炉超压",
    ...          "lead_department": "amr", "departments": ["amr", "emergency"], "first_seen": t0,
    ...          "last_seen": t0, "updated_at": t0, "source_event_id": "e1"}
    >>> player = DepartmentPlayer(seed=7, late_rate=0.0, silent_rate=0.0, unauthorised_rate=0.0, not_ours_rate=0.0)
    >>> player.on_alert(alert)
    >>> player.due(t0)                       # nothing happens at once
    []
    >>> first = player.due(datetime(2026, 3, 2, 9, 0, tzinfo=CST))   # item 8, red: acknowledge within 1 h
    >>> sorted((f["department"], f["status"]) for f in first)
    [('amr', 'acknowledged'), ('emergency', 'acknowledged')]
    >>> [(f["department"], f["status"]) for f in player.drain()]
    [('amr', 'in_progress'), ('amr', 'disposed')]
    >>> player.summary()["feedback"]
    {'acknowledged': 2, 'disposed': 1, 'in_progress': 1}
    """

    def __init__(
        self,
        seed: int = 7,
        late_rate: float = 0.15,
        silent_rate: float = 0.05,
        unauthorised_rate: float = 0.02,
        not_ours_rate: float = 0.05,
        lifecycle: Lifecycle | None = None,
        catalog: Catalog | None = None,
        oracle: Callable[[Alert], dict[str, Any]] | None = None,
    ):
        for name, v in (
            ("late_rate", late_rate),
            ("silent_rate", silent_rate),
            ("unauthorised_rate", unauthorised_rate),
            ("not_ours_rate", not_ours_rate),
        ):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if late_rate + silent_rate > 1.0:
            raise ValueError(f"late_rate + silent_rate must be <= 1, got {late_rate} + {silent_rate}")
        self.seed = seed
        self.late_rate = late_rate
        self.silent_rate = silent_rate
        self.unauthorised_rate = unauthorised_rate
        self.not_ours_rate = not_ours_rate
        # the outcome a disposing department reports (属实 / 不属实 / 误报): ``oracle(alert)`` when the caller
        # knows the ground truth (the simulator's incidents), else :func:`default_outcome`
        self.oracle = oracle
        self.lifecycle = lifecycle or load_lifecycle(catalog=catalog)
        self.catalog = catalog or self.lifecycle.catalog
        self.taskforce = self.catalog.taskforce_office
        self._alerts: dict[str, _AlertState] = {}
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[int, str, str, int, str]] = []  # (ts, alert_id, department, step, event_id)
        self._plans: list[Plan] = []
        self._sent: Counter[str] = Counter()
        self._late_sent = 0
        self._unauthorised_sent = 0
        self._cancelled = 0
        self._ignored = 0
        self.alerts_seen = 0

    # --- intake ---------------------------------------------------------------------------------
    def on_alert(self, alert: dict | Alert) -> None:
        """Take one alert revision; schedule, extend or cancel the departments' feedback."""
        a = alert if isinstance(alert, Alert) else Alert.model_validate(alert)
        self.alerts_seen += 1
        if not a.departments:
            self._ignored += 1  # nobody to answer (the pipeline always names at least one receiver)
            return
        status = a.status.value
        st = self._alerts.get(a.alert_id)
        if st is not None and a.revision <= st.revision:
            self._ignored += 1  # stale or duplicate revision
            return
        if st is None:
            if status not in OPEN_STATUSES:
                self._ignored += 1  # first seen pending / resolved / closed: nothing to answer
                if status in DONE_STATUSES:  # remember it, so an older open revision arriving late is ignored
                    self._alerts[a.alert_id] = _AlertState(a.revision, status, 0, [])
                return
            st = self._alerts[a.alert_id] = _AlertState(a.revision, status, 1, [])
            self._schedule(a, st, list(a.departments), a.first_seen, new_round=True)
            return
        was = st.status
        st.revision, st.status = a.revision, status
        if status in DONE_STATUSES:
            self._cancel(st)
        elif status in OPEN_STATUSES:
            if was in DONE_STATUSES or st.round == 0:  # open again: everyone must answer again
                st.round += 1
                st.departments = []
                self._schedule(a, st, list(a.departments), a.last_seen, new_round=True)
            else:
                added = [d for d in a.departments if d not in st.departments]
                if added:
                    self._schedule(a, st, added, a.last_seen, new_round=False)

    learn_one = on_alert  # River-style alias

    # --- output ---------------------------------------------------------------------------------
    def due(self, now: datetime | float) -> list[dict]:
        """Feedback events scheduled at or before ``now`` (simulated time), in time order."""
        limit = _ts(now)
        out: list[dict] = []
        while self._heap and self._heap[0][0] <= limit:
            *_, event_id = heapq.heappop(self._heap)
            e = self._entries.pop(event_id, None)
            if e is None:
                continue  # cancelled
            st = self._alerts.get(e.alert_id)
            if st is not None:
                st.pending.discard(event_id)
            self._sent[e.payload["status"]] += 1
            if e.plan.role == "outsider":
                self._unauthorised_sent += 1
            elif e.first and e.plan.behaviour == "late":
                self._late_sent += 1
            out.append(dict(e.payload))
        return out

    def drain(self, until: datetime | float | None = None) -> list[dict]:
        """Every feedback still scheduled (or only those up to ``until``), in time order."""
        return self.due(math.inf if until is None else until)

    @property
    def pending(self) -> int:
        """Feedback events scheduled and not yet returned."""
        return len(self._entries)

    def next_due(self) -> datetime | None:
        """Simulated time of the next scheduled feedback, if any."""
        while self._heap and self._heap[0][-1] not in self._entries:
            heapq.heappop(self._heap)
        return datetime.fromtimestamp(self._heap[0][0], CST) if self._heap else None

    # --- ground truth ---------------------------------------------------------------------------
    @staticmethod
    def is_unauthorised(feedback: dict | str) -> bool:
        """True for a feedback (or event id) deliberately sent by a department that is no receiver."""
        event_id = feedback if isinstance(feedback, str) else feedback["event_id"]
        return event_id.startswith("fbx-")

    def truth(self) -> list[dict]:
        """Every planned response: alert, department, role, behaviour, deadlines, event ids."""
        return [p.as_dict() for p in self._plans]

    def summary(self) -> dict[str, Any]:
        """Counts: feedback sent by status, late / never-answering departments, unauthorised, ..."""
        return {
            "alerts": self.alerts_seen,
            "feedback": dict(sorted(self._sent.items())),
            "sent": sum(self._sent.values()),
            "late": self._late_sent,
            "never": sum(1 for p in self._plans if p.behaviour == "silent"),
            "unauthorised": self._unauthorised_sent,
            "cancelled": self._cancelled,
            "pending": self.pending,
            "ignored_revisions": self._ignored,
        }

    # --- internals ------------------------------------------------------------------------------
    def _schedule(self, a: Alert, st: _AlertState, depts: list[str], anchor_dt: datetime, new_round: bool) -> None:
        level = a.level.value
        d = self.lifecycle.deadline(a.item_id, level)
        A, D = d.ack_hours * 3600.0, d.dispose_hours * 3600.0
        anchor = anchor_dt.timestamp()
        ack_due, dispose_due = anchor + A, anchor + D
        if new_round and a.ack_due is not None and a.ack_due.timestamp() > anchor:
            # the pipeline's own deadline: the alert fired ack_hours before it (after a pending period
            # the firing moment is later than first_seen)
            ack_due = a.ack_due.timestamp()
            anchor = max(anchor, ack_due - A)
            dispose_due = a.dispose_due.timestamp() if a.dispose_due is not None else anchor + D
        A, D = ack_due - anchor, max(dispose_due - anchor, ack_due - anchor)
        key = f"{self.seed}|{a.alert_id}|{st.round}" + ("" if new_round else "|+" + ",".join(depts))
        rng = random.Random(key)
        lead = a.lead_department if a.lead_department in a.departments else a.departments[0]
        iso = lambda t: datetime.fromtimestamp(t, CST).isoformat()  # noqa: E731
        # cancel a pending unauthorised feedback from a department that has just become a receiver
        for eid in sorted(st.pending):
            e = self._entries[eid]
            if e.plan.role == "outsider" and e.plan.department in depts:
                self._drop(st, eid)
        # who answers not_ours (one cooperating department, per round)
        coop = [x for x in depts if x != lead and x != self.taskforce]
        u_not_ours, pick = rng.random(), rng.random()
        not_ours = coop[int(pick * len(coop))] if coop and new_round and u_not_ours < self.not_ours_rate else None
        for dept in depts:
            if dept in st.departments:
                continue
            st.departments.append(dept)
            # the same draws whatever the rates, so changing a rate changes behaviours, not timings
            u, f_on, f_late, f_prog, f_disp, u_help, txt = (rng.random() for _ in range(7))
            behaviour: Behaviour = (
                "silent" if u < self.silent_rate else "late" if u < self.silent_rate + self.late_rate else "on_time"
            )
            role: Role = "lead" if dept == lead else "cooperating"
            answer = "" if behaviour == "silent" else "not_ours" if dept == not_ours else "acknowledged"
            plan = Plan(
                alert_id=a.alert_id,
                entity_id=a.entity_id,
                department=dept,
                role=role,
                behaviour=behaviour,
                answer=answer,
                level=level,
                item_id=a.item_id,
                anchor=iso(anchor),
                ack_deadline=iso(ack_due),
                dispose_deadline=iso(anchor + D),
                round=st.round,
            )
            self._plans.append(plan)
            if behaviour == "silent":
                continue
            t_ack = anchor + A * (0.05 + 0.80 * f_on if behaviour == "on_time" else 1.1 + 1.4 * f_late)
            t_prog = t_ack + D * (0.02 + 0.08 * f_prog)
            ack_text = ACK_COMMENTS if behaviour == "on_time" else LATE_ACK_COMMENTS
            if answer == "not_ours":
                self._add(st, plan, t_ack, 0, "not_ours", _pick(NOT_OURS_COMMENTS, txt), "", first=True)
            elif role == "lead":
                self._add(st, plan, t_ack, 0, "acknowledged", _pick(ack_text, txt), "", first=True)
                self._add(st, plan, t_prog, 1, "in_progress", _pick(PROGRESS_COMMENTS, txt), "")
                if behaviour == "on_time":  # strictly before the disposal deadline
                    t_disp = t_prog + (anchor + 0.97 * D - t_prog) * (0.2 + 0.7 * f_disp)
                else:
                    t_disp = t_prog + D * (0.1 + 0.5 * f_disp)
                outcome = self.oracle(a) if self.oracle is not None else default_outcome(a.rule, f_disp)
                result = FALSE_ALARM_RESULT if outcome["verdict"] == "false_alarm" else _pick(DISPOSED_RESULTS, f_disp)
                self._add(st, plan, t_disp, 2, "disposed", _pick(DISPOSED_COMMENTS, txt), result, outcome=outcome)
            else:
                self._add(st, plan, t_ack, 0, "acknowledged", _pick(ack_text, txt), "", first=True)
                if u_help < 0.4:
                    self._add(st, plan, t_prog, 1, "in_progress", _pick(COOP_PROGRESS_COMMENTS, txt), "")
        # an outsider's feedback (only when the alert starts a round)
        u_out, pick_out, f_out = rng.random(), rng.random(), rng.random()
        if new_round and u_out < self.unauthorised_rate:
            outsiders = [x for x in self.catalog.departments if x not in a.departments and x != self.taskforce]
            if outsiders:
                dept = outsiders[int(pick_out * len(outsiders))]
                plan = Plan(
                    alert_id=a.alert_id,
                    entity_id=a.entity_id,
                    department=dept,
                    role="outsider",
                    behaviour="on_time",
                    answer="acknowledged",
                    level=level,
                    item_id=a.item_id,
                    anchor=iso(anchor),
                    ack_deadline=iso(ack_due),
                    dispose_deadline=iso(anchor + D),
                    round=st.round,
                )
                self._plans.append(plan)
                self._add(
                    st,
                    plan,
                    anchor + A * (0.05 + 0.8 * f_out),
                    0,
                    "acknowledged",
                    _pick(ACK_COMMENTS, f_out),
                    "",
                    first=True,
                )

    def _add(
        self,
        st: _AlertState,
        plan: Plan,
        t: float,
        step: int,
        status: str,
        comment: str,
        result: str,
        first: bool = False,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        ts = int(round(t))
        outsider = plan.role == "outsider"
        h = hashlib.blake2b(
            f"{self.seed}|{plan.alert_id}|{plan.round}|{plan.department}|{step}|{status}|{outsider}".encode(),
            digest_size=10,
        ).hexdigest()
        event_id = ("fbx-" if outsider else "fb-") + h
        payload = {
            "schema_version": 1,
            "event_id": event_id,
            "entity_id": plan.entity_id,
            "occurred_at": datetime.fromtimestamp(ts, CST).isoformat(),
            "source": plan.department,
            "alert_id": plan.alert_id,
            "department": plan.department,
            "status": status,
            "comment": comment,
            "result": result,
        }
        if outcome is not None:
            payload["outcome"] = outcome
        plan.event_ids.append(event_id)
        self._entries[event_id] = _Entry(ts=ts, alert_id=plan.alert_id, payload=payload, plan=plan, first=first)
        st.pending.add(event_id)
        heapq.heappush(self._heap, (ts, plan.alert_id, plan.department, step, event_id))

    def _drop(self, st: _AlertState, event_id: str) -> None:
        if self._entries.pop(event_id, None) is not None:
            self._cancelled += 1
        st.pending.discard(event_id)

    def _cancel(self, st: _AlertState) -> None:
        for eid in sorted(st.pending):
            self._drop(st, eid)


FALSE_ALARM_RESULT = "经现场核查系设备故障误报,已要求企业校准传感器并加强日常巡检。"


def default_outcome(rule: str, u: float) -> dict[str, Any]:
    """The outcome a department reports without ground truth: a rule's alert (a limit, a regulation) is confirmed
    and rectification ordered; a model's alert is a sensor-fault false alarm one time in three (``u`` < 1/3).

    >>> default_outcome("rule.sensor.cold_chain_temp", 0.1)["verdict"], default_outcome("model.risk", 0.1)["reason"]
    ('confirmed', 'sensor_fault')
    """
    if rule.startswith("model.") and u < 1 / 3:
        return {"verdict": "false_alarm", "reason": "sensor_fault"}
    return {"verdict": "confirmed", "measures": ["rectify"], "rectify_note": "限期整改并报送整改材料"}


def _pick(options: tuple[str, ...], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


_ts = to_epoch  # naive datetimes are county time (+08:00), as everywhere in riskwatch


# --- after the alert: rectification orders and 双告知 notices ------------------------------------------------------
CLAIM_COMMENTS = ("企业已完成整改,附整改前后照片。", "已督促企业整改到位,整改报告已上传。", "整改完成,请安排复查。")
RECHECK_FAILED = "复查发现整改不到位,问题仍然存在。"
NOTICE_CONFIRM = "已认领,纳入本部门日常监管。"
NOTICE_DISPUTE = "该主体经营范围不属本部门监管,请专班办公室研判。"


def _share(seed: int, keys: list[str], rate: float, at_least_one: bool = True) -> set[str]:
    """The first ``ceil(rate × n)`` keys (``floor`` unless ``at_least_one``) in a seeded order: an exact share,
    whatever the order the keys arrive in."""
    if rate <= 0 or not keys:
        return set()
    ranked = sorted(keys, key=lambda k: hashlib.blake2b(f"{seed}|{k}".encode(), digest_size=8).digest())
    return set(ranked[: (math.ceil if at_least_one else math.floor)(rate * len(ranked))])


@dataclass(slots=True)
class OrderPlay:
    """Ground truth of one rectification order: whether the entity really fixed it before the first 复查."""

    order_id: str
    entity_id: str
    department: str
    item_id: int
    fixed_first: bool
    event_ids: list[str] = field(default_factory=list)


class FollowUpPlayer:
    """The departments after the alert: they claim their rectification orders (整改完成) and re-inspect them (复查),
    and answer the 双告知 notices (认领, or 有异议). Seeded and pure: it builds the events, the caller sends them.

    Ground truth decides each 复查: ``recheck_fail_rate`` of the orders (an exact share, chosen by the seed) were not
    really fixed at the first claim, so their first 复查 fails; the department then has the entity fix it, claims
    again, and the second 复查 passes (at least one order fails when the rate is above 0). Of the notices,
    ``dispute_rate`` are disputed (at least one: the entity is not the department's), ``silent_rate`` of the others
    left unanswered (rounded down), the rest confirmed.

    >>> p = FollowUpPlayer(seed=7, recheck_fail_rate=0.5)
    >>> plays = p.orders([{"order_id": f"RO-{i}", "entity_id": "E1", "department": "amr", "item_id": 1}
    ...                   for i in range(4)])
    >>> sum(not x.fixed_first for x in plays)
    2
    >>> claim = p.claim(plays[0], 1, datetime(2026, 12, 5, 9, tzinfo=CST))
    >>> claim["status"], claim["alert_id"], claim["department"]
    ('rectified', 'RO-0', 'amr')
    >>> p.recheck(plays[0], passed=False, at=datetime(2026, 12, 5, 10, tzinfo=CST))["outcome"]
    'fail'
    >>> answers = p.notices([{"notice_id": f"N{i}", "department": "amr", "entity_id": "E1"} for i in range(20)])
    >>> Counter(a for _, a in answers), 20 - len(answers)    # 1 disputed (ceil 5 %), 1 silent (floor 10 % of 19)
    (Counter({'confirm': 18, 'dispute': 1}), 1)
    """

    def __init__(
        self, seed: int = 7, recheck_fail_rate: float = 0.3, dispute_rate: float = 0.05, silent_rate: float = 0.1
    ):
        for name, v in (("recheck_fail_rate", recheck_fail_rate), ("dispute_rate", dispute_rate)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if dispute_rate + silent_rate > 1.0:
            raise ValueError(f"dispute_rate + silent_rate must be <= 1, got {dispute_rate} + {silent_rate}")
        self.seed = seed
        self.recheck_fail_rate = recheck_fail_rate
        self.dispute_rate = dispute_rate
        self.silent_rate = silent_rate
        self.sent: Counter[str] = Counter()

    def orders(self, rows: list[dict[str, Any]]) -> list[OrderPlay]:
        """The ground truth of each open order (rows: order_id, entity_id, department, item_id)."""
        failing = _share(self.seed, [r["order_id"] for r in rows], self.recheck_fail_rate)
        return [
            OrderPlay(
                r["order_id"], r["entity_id"], r["department"], int(r["item_id"] or 1), r["order_id"] not in failing
            )
            for r in rows
        ]

    def _id(self, *parts: object) -> str:
        return "fu-" + hashlib.blake2b("|".join(map(str, (self.seed, *parts))).encode(), digest_size=10).hexdigest()

    def claim(self, o: OrderPlay, n: int, at: datetime) -> dict[str, Any]:
        """整改完成 (``DisposalFeedback`` status ``rectified``, the order id as ``alert_id``), the ``n``-th claim."""
        self.sent["rectified"] += 1
        eid = self._id(o.order_id, "claim", n)
        o.event_ids.append(eid)
        return {
            "schema_version": 1,
            "event_id": eid,
            "entity_id": o.entity_id,
            "occurred_at": at.isoformat(),
            "source": o.department,
            "alert_id": o.order_id,
            "department": o.department,
            "status": "rectified",
            "comment": _pick(CLAIM_COMMENTS, (n - 1) / len(CLAIM_COMMENTS)),
            "result": "",
        }

    def recheck(self, o: OrderPlay, passed: bool, at: datetime) -> dict[str, Any]:
        """The 复查 (``InspectionResult`` with ``order_id``): ``passed`` as the ground truth says."""
        self.sent["recheck_pass" if passed else "recheck_fail"] += 1
        eid = self._id(o.order_id, "recheck", passed)
        o.event_ids.append(eid)
        return {
            "schema_version": 1,
            "event_id": eid,
            "entity_id": o.entity_id,
            "occurred_at": at.isoformat(),
            "source": o.department,
            "inspection_id": "RC-" + eid[3:15],
            "item_id": o.item_id,
            "departments": [o.department],
            "order_id": o.order_id,
            "outcome": "pass" if passed else "fail",
            "violations": [] if passed else [{"code": "rectify", "severity": "serious", "description": RECHECK_FAILED}],
        }

    def notices(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """(notice row, ``confirm`` | ``dispute``) for each notice answered; the silent ones are left out."""
        keys = [f"{r['notice_id']}/{r['department']}" for r in rows]
        disputed = _share(self.seed, keys, self.dispute_rate)
        silent = _share(self.seed + 1, [k for k in keys if k not in disputed], self.silent_rate, False)
        out = []
        for r, k in zip(rows, keys, strict=True):
            if k in silent:
                continue
            out.append((r, "dispute" if k in disputed else "confirm"))
        return out

    def notice_answer(self, row: dict[str, Any], action: str, at: datetime) -> dict[str, Any]:
        """The department's ``NoticeAnswer`` (on ``events.notice.<department>``)."""
        self.sent[f"notice_{action}"] += 1
        return {
            "schema_version": 1,
            "event_id": self._id(row["notice_id"], row["department"], action),
            "entity_id": row["entity_id"],
            "occurred_at": at.isoformat(),
            "source": row["department"],
            "notice_id": row["notice_id"],
            "action": action,
            "comment": NOTICE_DISPUTE if action == "dispute" else NOTICE_CONFIRM,
        }

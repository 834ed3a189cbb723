"""The processing step: one validated event + its entity's state → alerts and notices.

This is the user-facing processing API: pure Python, no Kafka, so every rule of the product is
testable on its own. The Faust app (``streams/runtime/app.py``) feeds it events partition by partition.

Path of one event: ``events.sensor`` → :meth:`Processor.process` → rules (``detectors/rules.py``)
and the stream detector (``detectors/sensor.py``) → :class:`~schemas.events.Alert` →
``alerts.<dept>`` for the item's lead and cooperating departments + ``alerts.all`` → ClickHouse.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import EntityEvent, SensorReading
>>> county = load_county()
>>> p = Processor(county.catalog, county.rules)
>>> st = EntityState()
>>> t = datetime(2026, 11, 27, 8, tzinfo=timezone.utc)
>>> _ = p.process(EntityEvent(event_id="r1", entity_id="E1", occurred_at=t, source="amr", action="registered",
...     name="舞泉镇鑫源食品有限公司", kind="food_producer", township="舞泉镇"), st, ("events.registry", 0, 0))
>>> reading = lambda n, v: SensorReading(event_id=f"s{n}", entity_id="E1", occurred_at=t, source="iot",
...     device_id="d1", channel="cold_chain_temp", value=v, unit="C")
>>> [p.process(reading(i, 9.5), st, ("events.sensor", 0, i)).alerts for i in (1, 2)]  # a door opened?
[[], []]
>>> out = p.process(reading(3, 9.8), st, ("events.sensor", 0, 3))      # confirmed (3 in 30 min): a case opens
>>> a = out.alerts[0]
>>> a.title, a.level_zh, a.departments
('冷链温度超过8℃上限', '橙色', ['amr', 'emergency', 'eco'])

Every event also updates the entity's fused risk (``detectors/fusion.py``, weights and thresholds
in ``riskwatch/data/fusion.yaml``): rule hits, sensor anomaly evidence, complaint / video-violation
surges (``detectors/rates.py``) and the inspection-outcome probability. ``Outcome.risk`` carries a
risk-score record when the score moved or the level changed; when the level changes (enter/exit
hysteresis) a ``model.risk`` alert is raised, revised or resolved:

>>> r = out.risk[0]
>>> r["score"], r["level"], r["item_id"], r["top"][0].signal, r["tier"]
(80.0, 'orange', 1, 'rule.sensor.cold_chain_temp', 'C')
>>> [x.rule for x in out.alerts]      # the rule alert already told the departments: no double notice
['rule.sensor.cold_chain_temp']

Inspection-outcome model: ``EntityHistory`` per entity (in :class:`EntityState`) and one shared
:class:`~detectors.inspection.InspectionOutcomeModel` per ``Processor`` — i.e. per worker process,
learning from the inspections of the partitions that worker holds. On an ``InspectionResult`` it
scores first (``Outcome.inspection_p``: the probability it gave before knowing the result), then
learns. Its state is NOT in the changelog: a restarted worker starts a fresh model and relearns
from the inspections it sees (``model_dumps``/``model_loads`` let the app checkpoint it, e.g.
under a reserved key per partition — not wired yet).
"""

from __future__ import annotations

import hashlib
import pickle
import time
from array import array
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from datetime import datetime, timedelta, timezone
from typing import Callable

from riskwatch.settings import DATA_DIR
from detectors.fusion import LEVELS as RISK_LEVELS, FusionConfig, load_fusion
from detectors.inspection import InspectionOutcomeModel, to_days
from detectors.rates import RateConfig, RateSurprise
from detectors.rules import Hit, RuleSet
from detectors.sensor import SensorAnomaly
from riskwatch.domain.catalog import Catalog
from riskwatch.domain.lifecycle import Lifecycle, Notification, Silence, load_lifecycle
from riskwatch.domain.planning import InspectionTask as Task, JointInspection, SpotCheckConfig, load_spot_checks, merge_tasks
from riskwatch.domain.routing import Router, load_routing
from schemas.audit import chain_hash, chain_row
from schemas.privacy import mask_pii
from schemas.events import (
    Alert,
    AlertStatus,
    Complaint,
    Contribution,
    DisposalFeedback,
    EntityEvent,
    Event,
    InspectionPlan,
    InspectionResult,
    InspectionTask,
    Level,
    SensorReading,
    TaskSource,
    VideoDetection,
)
from streams.engine import evidence as E
from streams.engine.state import RECENT_IDS, EntityState, OpenAlert

RESOLVE_AFTER_OK = 3  # consecutive in-limit readings that resolve a sensor alert
TRIM_SLACK_S = 600.0  # evidence readings older than the window are dropped once they are this much older
LEVELS = ("blue", "yellow", "orange", "red")


@dataclass(slots=True)
class Notice:
    """A message to departments that is not an alert: 双告知, unassigned kind, urging, escalation."""

    kind: str
    entity_id: str
    departments: list[str]
    text: str
    at: datetime

    def as_dict(self) -> dict:
        return {"kind": self.kind, "entity_id": self.entity_id, "departments": self.departments,
                "text": self.text, "at": self.at.isoformat()}


@dataclass(slots=True)
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    rejected: str | None = None  # reason, when the event is valid JSON but not acceptable (→ dead letter)
    duplicate_of: tuple | None = None  # where the same event_id was first seen
    redelivered: bool = False  # same message again (after a restart): already processed, skipped
    # risk-score records for ClickHouse risk_scores (sinks.rows.risk_score_row): dicts with
    # entity_id, at, score, level ("" below blue), item_id, top (Contributions), tier (A–D)
    risk: list = field(default_factory=list)
    inspection_p: float | None = None  # inspection-outcome model's score before it learnt this result
    transitions: list = field(default_factory=list)  # AlertTransition dicts (alerts.events, alert_history)
    plans: list = field(default_factory=list)  # InspectionPlan (inspection.plans, inspection_plans)
    tasks: list = field(default_factory=list)  # alert on-site checks (schemas InspectionTask → events_task rows)
    evidence: list = field(default_factory=list)  # sealed evidence bundles (streams/engine/evidence.py Draft rows)
    at: float = 0.0  # the event's time (unix seconds), computed once per event


class Processor:
    """Turns events into alert revisions; owns no I/O. ``clock`` is injectable for tests."""

    def __init__(self, catalog: Catalog, rules: RuleSet, clock: Callable[[], float] = time.time,
                 fusion: FusionConfig | None = None, model: InspectionOutcomeModel | None = None,
                 router: Router | None = None, lifecycle: Lifecycle | None = None,
                 planning: SpotCheckConfig | None = None, web_url: str = "", evidence: bool = True):
        self.catalog = catalog
        self.web_url = web_url.rstrip("/")  # workbench base URL: each alert revision links to its page
        # evidence bundles + the audit hash chain (docs/evidence-and-audit.md); off only to measure their cost
        self.evidence = evidence
        # joint inspections: merge window and which alert levels ask for an on-site check (spot_checks.yaml)
        self.planning = planning or load_spot_checks(catalog=catalog).config
        # pending, hysteresis, flapping, deadlines, urging and escalation (riskwatch/data/lifecycle.yaml)
        self.lifecycle = lifecycle or load_lifecycle(catalog=catalog)
        self.silences: list[Silence] = []  # maintenance windows; the app keeps them current
        # who receives an alert: the item's lead and cooperating departments + rules in data
        # (riskwatch/data/routing.yaml, e.g. red alerts also to the task-force office)
        self.router = router or load_routing(catalog=catalog)
        self.rules = rules
        self.clock = clock
        self.fusion = fusion or load_fusion(DATA_DIR / "fusion.yaml")
        # shared per worker process (see the module docstring): learns from this worker's inspections
        self.model = model or InspectionOutcomeModel()
        self._rate_cfg: dict[tuple[str, str], RateConfig] = {}
        self._windows: dict[str, tuple[int, float, float]] = {}  # channel -> (array length, before s, trim at s)

    @classmethod
    def from_county(cls, county, clock: Callable[[], float] = time.time,
                    model: InspectionOutcomeModel | None = None, web_url: str = "",
                    evidence: bool = True) -> "Processor":
        """A processor on the county's data as loaded once by :func:`riskwatch.domain.county.load_county`."""
        return cls(county.catalog, county.rules, clock=clock, fusion=county.fusion, model=model,
                   router=county.router, lifecycle=county.lifecycle, planning=county.spot_checks.config,
                   web_url=web_url, evidence=evidence)

    def model_dumps(self) -> bytes:
        """The per-worker inspection-outcome model, for a checkpoint."""
        return pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL)

    def model_loads(self, raw: bytes) -> None:
        self.model = pickle.loads(raw)

    # --- entry point ---------------------------------------------------------------------------
    def process(self, ev: Event, st: EntityState, where: tuple, keep: int = RECENT_IDS) -> Outcome:
        """``keep``: how many recent event ids the entity's ring holds after this one (more than
        ``RECENT_IDS`` for the readings of a gateway batch, so that a replayed batch is skipped
        reading by reading)."""
        out = Outcome()
        first = st.first_delivery(ev.event_id, where)
        if first is not None:
            if tuple(first) == tuple(where):
                out.redelivered = True
            else:
                out.duplicate_of = tuple(first)
                out.rejected = (f"duplicate event_id {ev.event_id!r}: first seen at "
                                f"{first[0]}[{first[1]}]@{first[2]}; events must have unique ids")
            return out
        st.seen(ev.event_id, where, keep, checked=True)
        out.at = t = ev.occurred_at.timestamp()
        if t > st.last_seen:
            st.last_seen = t
        handler = self._handlers.get(type(ev))
        if handler is not None:
            handler(self, ev, st, out)
        if not out.rejected and ev.entity_id != "unknown":
            self._risk(ev, st, out)
        if st.alerts and not out.rejected:  # a refused event goes to the dead letters: it changes no alert
            if self.evidence:
                self._seal_due(ev.entity_id, st, out, ev.occurred_at.timestamp(), ev.event_id)
            self._close_quiet(ev, st, out)
        return out

    def _close_quiet(self, ev: Event, st: EntityState, out: Outcome) -> None:
        """Resolved alerts whose grace period passed by this entity's own event time are closed
        (and leave the state) here too, not only by the deadline timer."""
        t = ev.occurred_at.timestamp()
        grace = self.lifecycle.policy.close_grace_minutes * 60
        for fp, oa in list(st.alerts.items()):
            lc = oa.lc
            if lc.status == "resolved" and not lc.flapping and lc.resolved_at is not None and t >= lc.resolved_at + grace:
                rev = lc.revision
                self._publish(ev.entity_id, ev.event_id, st, out, oa, [], self.lifecycle.tick(lc, t, self.silences), rev)
                if lc.status == "closed":
                    del st.alerts[fp]

    # --- handlers ------------------------------------------------------------------------------
    def _registry(self, ev: EntityEvent, st: EntityState, out: Outcome) -> None:
        new = not st.registered
        st.name, st.kind, st.township = ev.name, ev.kind, ev.township
        st.registered = True
        st.closed = ev.action == "closed"
        st.licensed = bool(ev.licence)
        if new and ev.action == "registered":
            items = self.catalog.items_for_kind(ev.kind)
            kind_zh = self.catalog.entity_kinds[ev.kind].name
            if items:
                leads = sorted({i.lead for i in items})
                names = "、".join(i.name for i in items)
                out.notices.append(Notice("dual_notification", ev.entity_id, leads,
                                          f"双告知:新登记{kind_zh}「{ev.name}」({ev.township}),纳入{names},请落实监管责任。",
                                          ev.occurred_at))
            else:
                tf = self.catalog.taskforce_office
                out.notices.append(Notice("unassigned", ev.entity_id, [tf],
                                          f"待研判:新登记主体「{ev.name}」类型为{kind_zh},尚无对应监管事项和行业主管部门,请专班办公室研判定性。",
                                          ev.occurred_at))

    @staticmethod
    def _confirmed(st: EntityState, key: str, t: float, hit: Hit) -> bool:
        """A rule that needs ``confirm`` hits within ``within_s`` (one stray reading or detection is
        not a case): remember the recent hit times and say whether there are enough now."""
        if hit.confirm <= 1:
            return True
        times = [x for x in st.confirm.get(key, ()) if t - x <= hit.within_s] + [t]
        st.confirm[key] = times[-hit.confirm:]
        return len(times) >= hit.confirm

    def _sensor(self, ev: SensorReading, st: EntityState, out: Outcome) -> None:
        key = f"{ev.device_id}:{ev.channel}"
        det = st.sensors.get(key)
        t = out.at
        if self.evidence:  # the evidence window: the device's last readings (bounded), and open after-windows
            buf = st.readings.get(key)
            if buf is None:
                buf = st.readings[key] = array("d")
            buf.append(t)
            buf.append(ev.value)
            win = self._windows.get(ev.channel)
            if win is None:
                w = self.rules.evidence_window(ev.channel)
                win = self._windows[ev.channel] = (2 * w.max_points, w.before_s, w.before_s + TRIM_SLACK_S)
            if len(buf) > win[0]:
                del buf[:2]
            if buf[0] < t - win[2]:  # only the window before a trigger is needed: trimmed lazily, in steps
                horizon = t - win[1]
                i = 0
                while i < len(buf) and buf[i] < horizon:
                    i += 2
                del buf[:i]
            if st.alerts:
                for oa in st.alerts.values():
                    d = oa.evidence
                    if d is not None and not d.final and d.key == key:
                        d.add_point(t, ev.value)
        baseline = det.slow if det is not None and det.warmed_up(t) else None
        hit = self.rules.on_sensor(ev.channel, ev.value, baseline)
        fp_rule = f"rule.sensor.{ev.channel}"
        if hit and not self._confirmed(st, f"{hit.rule}:{ev.device_id}", t, hit):
            pass  # a breach not yet confirmed: neither a case nor a sign of recovery
        elif hit:
            self._raise(ev, st, out, hit, [Contribution(signal=f"sensor.{ev.channel}", value=ev.value,
                                                        detail=f"{ev.device_id} 读数 {ev.value:g}{ev.unit}")])
        else:
            self._ok(ev, st, out, fp_rule)
        if det is None:
            det = st.sensors[key] = SensorAnomaly()
        st.touch_sensor(key)
        score, alert = det.update(ev.value, t)
        if score > 0.0 and det.warmed_up(t):
            # fusion accumulates evidence: use the undamped score while the detector suppresses
            raw = score / det.damp if (not alert and det.since_alert <= det.suppress and det.damp > 0) else score
            st.risk.learn_one(t, f"anomaly.{ev.channel}", min(raw, 1.0), self.fusion)
        if alert:
            st.history.on_signal(to_days(t), "sensor")
        model_rule = f"model.sensor.{ev.channel}"
        if alert and not hit and self.fusion.sensor_model_alerts:
            level = "yellow" if score >= 0.9 else "blue"
            self._raise(ev, st, out, Hit(model_rule, level, "传感器读数异常(模型预警)", score),
                        [Contribution(signal=f"anomaly.{ev.channel}", value=round(score, 4),
                                      detail=f"{ev.device_id} 读数 {ev.value:g}{ev.unit},偏离该设备历史规律")])

    def _video(self, ev: VideoDetection, st: EntityState, out: Outcome) -> None:
        if self.evidence:
            st.videos = [*st.videos[-7:], (ev.occurred_at.timestamp(), ev.event_id, ev.camera_id, ev.cls.value,
                                            ev.confidence, ev.evidence_ref)]
        self._rate(ev, st, "video")
        st.history.on_signal(to_days(ev.occurred_at), "video")
        hit = self.rules.on_video(ev.cls, ev.confidence)
        if hit and self._confirmed(st, hit.rule, ev.occurred_at.timestamp(), hit):
            self._raise(ev, st, out, hit, [Contribution(signal=f"video.{ev.cls}", value=ev.confidence,
                                                        detail=f"摄像头 {ev.camera_id},证据 {ev.evidence_ref}")])

    def _complaint(self, ev: Complaint, st: EntityState, out: Outcome) -> None:
        if ev.entity_id != "unknown":
            self._rate(ev, st, "complaint")
            st.history.on_complaint(to_days(ev.occurred_at))
        if self.evidence:
            st.complaints = [*st.complaints[-7:], E.complaint_record(ev)]
        hit = self.rules.on_complaint(ev.category)
        crime = self._complaint_crime(ev, st)
        if crime and not hit:
            hit = Hit("rule.crime", "red", crime[0][1], 1.0)
        if hit:
            oa = self._raise(ev, st, out, hit, [Contribution(signal=f"complaint.{ev.category}", value=1.0,
                                                             detail=f"{ev.channel} 渠道投诉")], crime=crime)
            if crime and oa is not None:
                self._transfer(ev.entity_id, st, out, oa, crime, ev.occurred_at.timestamp())

    def _complaint_crime(self, ev: Complaint, st: EntityState) -> list[tuple[str, str]]:
        """Suspected-crime flags of a complaint (rules.yaml suspected_crime): its category, a
        food-poisoning cluster, unlicensed special equipment that hurt someone."""
        sc = self.rules.suspected_crime
        cat = ev.category.value
        flags = []
        if cat in sc.complaint_categories:
            flags.append((f"complaint:{cat}", sc.complaint_categories[cat]))
        pc = sc.food_poisoning_cluster
        if pc is not None and cat == "food_poisoning" and ev.entity_id != "unknown":
            since = ev.occurred_at.timestamp() - pc.within_hours * 3600
            n = sum(1 for c in st.complaints if c[3] == "food_poisoning" and c[0] >= since)
            if n >= pc.complaints:
                flags.append(("food_poisoning_cluster", f"{pc.title}({pc.within_hours:g}小时内{n}起食物中毒投诉)"))
        ui = sc.unlicensed_equipment_injury
        if (ui is not None and st.registered and not st.licensed and st.kind in ui.entity_kinds
                and cat in ui.complaint_categories and any(k in ev.text for k in ui.keywords)):
            flags.append(("unlicensed_equipment_injury", ui.title))
        return flags

    def _inspection(self, ev: InspectionResult, st: EntityState, out: Outcome) -> None:
        # the visit happened: the pending tasks of its departments for this entity are done
        done = set(ev.departments)
        st.tasks = {k: t for k, t in st.tasks.items() if t.department not in done}
        # the inspection-outcome model: score with the history as it was before the visit, then learn
        days = to_days(ev.occurred_at)
        ctx = {"item": str(ev.item_id), "lead": ev.departments[0]}
        x = st.history.features(days, ctx)
        out.inspection_p = self.model.predict_proba_one(x)
        n_crit = sum(1 for v in ev.violations if v.severity == "critical")
        n_ser = sum(1 for v in ev.violations if v.severity == "serious")
        n_min = sum(1 for v in ev.violations if v.severity == "minor")
        self.model.learn_one(x, n_crit + n_ser > 0)
        st.history.on_inspection(days, critical=n_crit, serious=n_ser, minor=n_min, failed=ev.outcome == "fail")
        worst = ev.worst
        hit = self.rules.on_inspection(ev.outcome, worst.value if worst else None)
        crime = self.rules.suspected_crime.on_violations(ev.violations) if ev.violations else []
        if crime and not hit:
            hit = Hit("rule.inspection", "orange", "检查发现涉嫌犯罪线索", 1.0)
        if hit:
            n = sum(1 for v in ev.violations if v.severity != "minor")
            oa = self._raise(ev, st, out, hit, [Contribution(signal="inspection.violations", value=float(n),
                                                             detail=f"检查 {ev.inspection_id}:{ev.outcome}")],
                             item_id=ev.item_id, crime=crime)
            if crime and oa is not None:
                self._transfer(ev.entity_id, st, out, oa, crime, ev.occurred_at.timestamp())
        elif ev.outcome == "pass":
            # A clean inspection confirms the entity is in order: open inspection/complaint/video
            # alerts of that item are resolved (sensor alerts resolve from their readings).
            for oa in list(st.alerts.values()):
                if oa.status not in ("resolved", "closed") and not oa.rule.startswith(("rule.sensor", "model.sensor")):
                    self._clear(ev, st, out, oa)

    def _task(self, ev: InspectionTask, st: EntityState, out: Outcome) -> None:
        if ev.task_id in st.tasks:
            return
        st.tasks[ev.task_id] = Task(ev.task_id, ev.entity_id, ev.department, ev.due.timestamp(), ev.item_id,
                                    ev.kind.value, ev.ref, ev.note)
        self._plan(ev.entity_id, st, out, ev.task_id, ev.occurred_at.timestamp())

    def _plan(self, entity_id: str, st: EntityState, out: Outcome, task_id: str, at: float, moved: bool = False) -> None:
        """Merge the entity's pending tasks; publish the visit the new task belongs to when several
        departments take part (a joint inspection led by the item's lead department). ``moved``:
        the task changed department; a plan already published with it is published again (same
        ``inspection_id``, later ``planned_at``: the new version of its row)."""
        window = self.planning.joint_window_days * 86400
        stale = [k for k, t in st.tasks.items() if t.due < at - 90 * 86400]  # long overdue: dropped, never planned
        for k in stale:
            del st.tasks[k]
        for ji in merge_tasks(st.tasks.values(), window, self.catalog):
            if not any(t.task_id == task_id for t in ji.tasks):
                continue
            again = moved and ji.inspection_id in st.plans
            if not again and (not ji.joint or ji.inspection_id in st.plans):
                continue
            if not again:
                st.plans = [*st.plans[-15:], ji.inspection_id]
            out.plans.append(self._plan_of(entity_id, st, ji, at))

    @staticmethod
    def _plan_of(entity_id: str, st: EntityState, ji: JointInspection, at: float) -> InspectionPlan:
        return InspectionPlan(
            inspection_id=ji.inspection_id, entity_id=entity_id, entity_name=st.name, township=st.township,
            lead=ji.lead, departments=list(ji.departments), item_ids=list(ji.item_ids), due=_dt(ji.due),
            joint=ji.joint, task_ids=[t.task_id for t in ji.tasks], sources=[t.source for t in ji.tasks],
            planned_at=_dt(at))

    def _alert_task(self, entity_id: str, st: EntityState, out: Outcome, oa: OpenAlert, at: float) -> None:
        """A firing alert of a serious level asks its lead department for an on-site check."""
        if oa.level not in self.planning.alert_task_levels or oa.lc.dispose_due is None:
            return
        tid = f"AT-{oa.alert_id}"
        if tid in st.tasks:
            return
        st.tasks[tid] = t = Task(tid, entity_id, oa.departments[0], oa.lc.dispose_due, oa.item_id, "alert", oa.alert_id,
                                 f"预警核查:{oa.title}")
        out.tasks.append(self._task_event(t, oa))
        self._plan(entity_id, st, out, tid, at)

    def _task_event(self, t: Task, oa: OpenAlert) -> InspectionTask:
        """The alert's on-site check as an ``events_task`` row: keyed by the task id and the time the
        alert fired, so a moved task (专班改派 to a new lead) is a new version of the same row."""
        return InspectionTask.model_construct(
            event_id=t.task_id, entity_id=t.entity_id, occurred_at=_dt(oa.lc.fired_at or oa.first_seen), source="riskwatch",
            schema_version=1, task_id=t.task_id, department=t.department, due=_dt(t.due), item_id=t.item_id,
            kind=TaskSource.alert, ref=t.ref, note=t.note)

    def _move_alert_task(self, entity_id: str, st: EntityState, out: Outcome, oa: OpenAlert, old_lead: str,
                         at: float) -> None:
        """The office made another department lead (专班改派): the alert's on-site check, if the old
        lead still has it (not yet inspected), moves to the new lead, due by the new disposal
        deadline; the joint visits it was or now is part of are published again."""
        tid = f"AT-{oa.alert_id}"
        t = st.tasks.get(tid)
        if t is None or t.department != old_lead or oa.lc.dispose_due is None:
            return
        window = self.planning.joint_window_days * 86400
        before = next((ji for ji in merge_tasks(st.tasks.values(), window, self.catalog)
                       if any(x.task_id == tid for x in ji.tasks)), None)
        # without its item: the item's lead was released from this alert, and an item would make it
        # lead a joint visit again (merge_tasks: the item's lead leads)
        st.tasks[tid] = t = Task(tid, entity_id, oa.lc.lead, oa.lc.dispose_due, None, t.source, t.ref, t.note)
        out.tasks.append(self._task_event(t, oa))
        self._plan(entity_id, st, out, tid, at, moved=True)
        if before is not None and before.inspection_id in st.plans and not any(
                p.inspection_id == before.inspection_id for p in out.plans):
            # the new due date took the check out of the visit it was planned in: that visit keeps
            # its id (a new version of its row) with the tasks that remain
            rest = [x for x in before.tasks if x.task_id != tid]
            if rest:
                ji = merge_tasks(rest, float("inf"), self.catalog)[0]
                out.plans.append(self._plan_of(entity_id, st, dc_replace(ji, inspection_id=before.inspection_id), at))

    def _reassign(self, ev: DisposalFeedback, st: EntityState, out: Outcome, oa: OpenAlert) -> None:
        """Only the office may (Lifecycle.reassign refuses anyone else: a dead letter with the reason)."""
        rev, lead = oa.lc.revision, oa.lc.lead
        res = self.lifecycle.reassign(oa.lc, ev.department, ev.assign_to, ev.occurred_at, ev.comment,
                                      self.silences, user=ev.user)
        if res.rejected:
            out.rejected = res.rejected
            return
        self._publish(ev.entity_id, ev.event_id, st, out, oa, [], res.notifications, rev)
        if oa.lc.lead != lead:
            self._move_alert_task(ev.entity_id, st, out, oa, lead, ev.occurred_at.timestamp())

    def _feedback(self, ev: DisposalFeedback, st: EntityState, out: Outcome) -> None:
        oa = next((a for a in st.alerts.values() if a.alert_id == ev.alert_id), None)
        if oa is None:
            out.rejected = (f"feedback for unknown or already closed alert {ev.alert_id!r} of entity "
                            f"{ev.entity_id!r}; check the alert_id (alerts FINAL in ClickHouse)")
            return
        if ev.status == "reassign":  # the task-force office decides who is responsible (专班研判改派)
            self._reassign(ev, st, out, oa)
            return
        attached = f"[附件 sha256:{ev.attachment_sha256}]" if ev.attachment_sha256 else ""
        comment = " ".join(x for x in (ev.comment, ev.result, attached) if x)
        rev = oa.lc.revision
        status = ev.status.value if hasattr(ev.status, "value") else ev.status
        if status in ("accepted", "declined"):  # a case transfer's receiver answers (行刑衔接)
            res = self.lifecycle.on_transfer_feedback(oa.lc, ev.department, status, ev.occurred_at,
                                                      mask_pii(comment) if self.evidence else comment, user=ev.user)
            if res.rejected:
                out.rejected = res.rejected
                return
            self._publish(ev.entity_id, ev.event_id, st, out, oa, [], res.notifications, rev)
            return
        res = self.lifecycle.on_feedback(oa.lc, ev.department, ev.status.value if hasattr(ev.status, "value") else ev.status,
                                         ev.occurred_at, comment, self.silences, user=ev.user)
        if res.rejected:
            out.rejected = res.rejected
            return
        self._publish(ev.entity_id, ev.event_id, st, out, oa, [], res.notifications, rev)

    # --- signals, rates and the fused risk ------------------------------------------------------
    def _rate(self, ev: Event, st: EntityState, signal: str) -> None:
        key = (signal, st.kind)
        cfg = self._rate_cfg.get(key)
        if cfg is None:
            spec = self.fusion.rates.get(signal)
            cfg = self._rate_cfg[key] = RateConfig() if spec is None else RateConfig(
                prior_rate=spec.per_kind.get(st.kind, spec.default), prior_days=spec.prior_days,
                window=spec.window_days, half_life=spec.half_life_days, l_max=spec.l_max)
        t = ev.occurred_at.timestamp()
        r = st.rates.get(signal)
        if r is None:
            r = st.rates[signal] = RateSurprise(t)
        r.learn_one(t, cfg)
        s = r.score_one(t, cfg)
        if s > 0.0:
            st.risk.learn_one(t, f"rate.{signal}", s, self.fusion)

    def _inspection_signal(self, ev: Event, st: EntityState) -> None:
        if self.model.n_seen < self.fusion.inspection_min_seen:
            return  # a model that has seen few inspections is noise, not evidence
        base = self.model.base_rate
        p = self.model.predict_proba_one(st.history.features(to_days(ev.occurred_at), {}))
        st.risk.set_one(ev.occurred_at.timestamp(), "inspection.p", max(0.0, (p - base) / (1.0 - base)))

    def _risk(self, ev: Event, st: EntityState, out: Outcome) -> None:
        """Update the entity's fused risk; emit a risk record and raise/revise/resolve model.risk."""
        risk = st.risk
        if isinstance(ev, (InspectionResult, Complaint, VideoDetection)):
            self._inspection_signal(ev, st)
        if not risk.signals and not risk.level:
            return  # nothing to fuse (the common case of a quiet entity's sensor reading)
        cfg = self.fusion
        t = ev.occurred_at.timestamp()
        item_id = self._route(st, ev.item_id if isinstance(ev, InspectionResult) else None)[0]
        rs = risk.update(t, cfg, item_id)
        if not rs.changed and abs(rs.score - risk.emitted) < cfg.emit_min_delta:
            return
        top = rs.top
        risk.emitted = rs.score
        out.risk.append({"entity_id": ev.entity_id, "at": ev.occurred_at, "score": rs.score, "level": rs.level,
                         "item_id": item_id, "top": top, "tier": risk.tier(cfg)})
        if not rs.changed:
            return
        fp = f"{ev.entity_id}|{item_id or 0}|model.risk"
        oa = st.alerts.get(fp)
        is_open = oa is not None and oa.status in ("pending", "firing", "acknowledged", "disposing")
        floor = RISK_LEVELS.index(cfg.alert_min_level)
        rank = RISK_LEVELS.index(rs.level)
        title = f"综合风险评分{rs.score:.0f}分"
        if rank >= floor:
            if is_open:
                oa.title, oa.score = title, rs.score
                oa.last_seen = max(oa.last_seen, t)
                rev = oa.lc.revision
                notes = self.lifecycle.observe(oa.lc, t, max(rs.score, self.lifecycle.policy.hysteresis.enter),
                                               level=rs.level, silences=self.silences)
                self._publish(ev.entity_id, ev.event_id, st, out, oa, top, notes, rev, force=True)
                return
            covered = any(a.status not in ("resolved", "closed") and not a.rule.startswith("model.")
                          and LEVELS.index(a.level) + 1 >= rank for a in st.alerts.values())
            # a new risk alert only when the level goes UP into the alert range (a decaying risk
            # passing through orange after a rule alert resolved is not news)
            if not covered and rank > RISK_LEVELS.index(rs.previous):
                self._raise(ev, st, out, Hit("model.risk", rs.level, title, rs.score), top, item_id=item_id,
                            score=rs.score)
        elif is_open:
            oa.score = rs.score
            self._clear(ev, st, out, oa)

    _handlers = {EntityEvent: _registry, SensorReading: _sensor, VideoDetection: _video,
                 Complaint: _complaint, InspectionResult: _inspection, DisposalFeedback: _feedback,
                 InspectionTask: _task}

    # --- alert bookkeeping ---------------------------------------------------------------------
    def _route(self, st: EntityState, item_id: int | None, level: str = "blue") -> tuple[int | None, tuple[str, ...]]:
        if not st.kind:  # not (yet) in the registry: the task-force office decides
            return None, (self.catalog.taskforce_office,)
        if item_id is not None and item_id not in self.catalog.items:
            item_id = None
        d = self.router.route(item_id, st.kind, level, st.township)
        return d.item_id, tuple(d.departments)

    def _raise(self, ev: Event, st: EntityState, out: Outcome, hit: Hit, why: list[Contribution],
               item_id: int | None = None, score: float | None = None,
               crime: list[tuple[str, str]] | None = None) -> OpenAlert:
        """A detector's condition holds: open an alert (pending or firing), or feed the open one."""
        item_id, depts = self._route(st, item_id, hit.level)
        fp = f"{ev.entity_id}|{item_id or 0}|{hit.rule}"
        t = ev.occurred_at.timestamp()
        lc = self.lifecycle
        score = _level_score(hit.level) if score is None else score
        if not hit.rule.startswith("model."):
            st.risk.learn_one(t, hit.rule, _level_score(hit.level) / 100.0, self.fusion)
        oa = st.alerts.get(fp)
        if oa is not None and oa.lc.status != "closed":  # open, pending, or resolved within its grace period
            oa.hits += 1
            oa.ok_streak = 0
            oa.last_seen = max(oa.last_seen, t)
            up = LEVELS.index(hit.level) > LEVELS.index(oa.lc.level)
            if up:
                oa.title = hit.title
            rev = oa.lc.revision
            notes = lc.observe(oa.lc, t, max(score, lc.policy.hysteresis.enter), level=hit.level if up else None,
                               departments=depts if up else None, silences=self.silences)
            self._publish(ev.entity_id, ev.event_id, st, out, oa, why, notes, rev)
            return oa
        episode = st.episodes.get(fp, 0) + 1
        st.episodes[fp] = episode
        alert_id = hashlib.blake2b(f"{fp}#{episode}".encode(), digest_size=10).hexdigest()
        # a confirmed rule (several hits), an inspection finding, a complaint or a video detection is a
        # fact: it fires at once; a single reading or a model score waits out the pending period
        immediate = hit.confirm > 1 or not isinstance(ev, SensorReading) and not hit.rule.startswith("model.")
        lst, notes = lc.open(alert_id, ev.entity_id, hit.rule, item_id, hit.level, depts, at=t,
                             score=max(score, lc.policy.hysteresis.enter), title=hit.title,
                             entity_name=st.name or ev.entity_id, silences=self.silences, immediate=immediate)
        oa = OpenAlert(alert_id=alert_id, fingerprint=fp, rule=hit.rule, item_id=item_id, level=hit.level,
                       status=lst.status, revision=0, first_seen=t, last_seen=t, title=hit.title,
                       departments=depts, score=score, lc=lst)
        st.alerts[fp] = oa
        if self.evidence:
            oa.evidence = self._bundle(ev, st, alert_id, hit, why, crime)
            out.evidence.append(oa.evidence.seal_first())
        self._publish(ev.entity_id, ev.event_id, st, out, oa, why, notes, 0)
        return oa

    # --- evidence and case transfers ------------------------------------------------------------
    def _bundle(self, ev: Event, st: EntityState, alert_id: str, hit: Hit, why, crime) -> E.Draft:
        """The evidence bundle of a new alert (streams/engine/evidence.py): what the entity has on it now."""
        t = ev.occurred_at.timestamp()
        items, after_s, key = [], 0.0, ""
        if isinstance(ev, SensorReading):
            w = self.rules.evidence_window(ev.channel)
            key = f"{ev.device_id}:{ev.channel}"
            pts = E.window_points(st.readings.get(key), t - w.before_minutes * 60, t)
            items.append(E.readings_item(ev.device_id, ev.channel.value, ev.unit, w.before_minutes, w.after_minutes,
                                         pts or [(t, ev.value)]))
            after_s = w.after_minutes * 60
        elif isinstance(ev, VideoDetection):
            since = t - (hit.within_s or 0.0)
            items += [E.video_item(v) for v in st.videos if v[3] == ev.cls.value and v[0] >= since]
        elif isinstance(ev, Complaint):
            if ev.entity_id == "unknown":
                items.append(E.complaint_item(E.complaint_record(ev)))
            else:
                since = t - 86400.0
                items += [E.complaint_item(c) for c in st.complaints if c[3] == ev.category.value and c[0] >= since]
        elif isinstance(ev, InspectionResult):
            items.append(E.inspection_item(ev))
        items.append(E.explanation_item(hit.rule, hit.level, hit.title, why))
        if crime:
            items.append(E.crime_item(crime))
        return E.Draft.open(ev, alert_id, hit.rule, items, after_s=after_s, key=key)

    def _seal_due(self, entity_id: str, st: EntityState, out: Outcome, now: float, source: str) -> None:
        """Bundles whose after-window has passed are sealed as version 2 (recorded in the chain)."""
        for oa in list(st.alerts.values()):
            d = oa.evidence
            if d is None or d.final or now < d.end:
                continue
            out.evidence.append(d.seal(d.end))
            rev = oa.lc.revision
            self.lifecycle.record(oa.lc, d.end, "evidence", "system",
                                  f"证据包 v{d.version} sha256:{d.hash}(含触发后读数 {len(out.evidence[-1]['header']['items'])} 项,取代 v1 {d.first_hash[:16]}…)")
            self._publish(entity_id, source, st, out, oa, [], [], rev, force=True, at=d.end)

    def _transfer(self, entity_id: str, st: EntityState, out: Outcome, oa: OpenAlert, crime, at: float) -> None:
        """A suspected crime: the case goes to the police (and others, routing.yaml case_transfer)."""
        to = self.router.config.case_transfer.targets([f for f, _ in crime])
        rev = oa.lc.revision
        reasons = ";".join(dict.fromkeys(r for _, r in crime))
        notes = self.lifecycle.transfer(oa.lc, to, at, reasons, oa.evidence.hash if oa.evidence is not None else "")
        self._publish(entity_id, "router", st, out, oa, [], notes, rev)

    def _ok(self, ev: SensorReading, st: EntityState, out: Outcome, rule: str) -> None:
        for oa in list(st.alerts.values()):
            if oa.rule == rule and oa.status not in ("resolved", "closed"):
                oa.ok_streak += 1
                if oa.ok_streak >= RESOLVE_AFTER_OK:
                    self._clear(ev, st, out, oa)

    def _clear(self, ev: Event, st: EntityState, out: Outcome, oa: OpenAlert) -> None:
        """The alert's condition no longer holds (in-limit readings, a clean inspection, low risk)."""
        oa.last_seen = max(oa.last_seen, ev.occurred_at.timestamp())
        rev = oa.lc.revision
        notes = self.lifecycle.observe(oa.lc, ev.occurred_at, 0.0, silences=self.silences)
        self._publish(ev.entity_id, ev.event_id, st, out, oa, [], notes, rev)

    def tick(self, entity_id: str, st: EntityState, now: float) -> Outcome:
        """Time passing without events: pending alerts fire, overdue ones are urged and escalated,
        resolved ones close after their grace period (closed ones leave the state). The app calls it
        for every entity with alerts, from a timer, with its clock (wall or stream time)."""
        out = Outcome()
        if self.evidence:
            self._seal_due(entity_id, st, out, now, "timer")
        for fp, oa in list(st.alerts.items()):
            rev = oa.lc.revision
            notes = self.lifecycle.tick(oa.lc, now, self.silences)
            self._publish(entity_id, "timer", st, out, oa, [], notes, rev, at=now)
            if oa.lc.status == "closed":
                del st.alerts[fp]
        return out

    def _publish(self, entity_id: str, source: str, st: EntityState, out: Outcome, oa: OpenAlert,
                 why: list[Contribution], notes: list[Notification], rev_before: int, force: bool = False,
                 at: float | None = None) -> None:
        """After a lifecycle step: record its transitions, and one alert revision per notification
        (sent to the notification's departments) or, without one, a state update for alerts.all."""
        lc = oa.lc
        oa.status, oa.level, oa.departments = lc.status, lc.level, tuple(lc.departments)
        new = lc.revision - rev_before
        if new <= 0 and not notes and not force:
            return
        if new > 0:
            chained = self.evidence
            for i, tr in enumerate(lc.transitions[-new:] if new <= len(lc.transitions) else lc.transitions):
                seq = lc.revision - min(new, len(lc.transitions)) + i + 1
                if not chained:
                    out.transitions.append({
                        "alert_id": lc.alert_id, "seq": seq, "entity_id": entity_id, "at": _dt(tr.at), "kind": tr.kind,
                        "from_status": tr.from_status, "to_status": tr.to_status, "actor": tr.actor, "comment": tr.comment})
                    continue
                # the audit chain: the row exactly as alert_history stores it (time in ms, comment masked)
                at_ms = int(round(tr.at * 1000))
                row = chain_row(lc.alert_id, seq, entity_id, at_ms, tr.kind, tr.from_status, tr.to_status, tr.actor,
                                mask_pii(tr.comment))
                prev = oa.chain or (oa.evidence.first_hash if oa.evidence is not None else "")
                h = chain_hash(prev, row)
                oa.chain = h
                st.unanchored[lc.alert_id] = (seq, h)
                out.transitions.append({
                    "alert_id": lc.alert_id, "seq": seq, "entity_id": entity_id, "at": _EPOCH + timedelta(milliseconds=at_ms),
                    "kind": tr.kind, "from_status": row["from_status"], "to_status": tr.to_status, "actor": tr.actor,
                    "comment": row["comment"], "prev_hash": prev, "hash": h})
        for n in notes or [None]:
            oa.revision += 1
            out.alerts.append(self._alert(entity_id, source, st, oa, why, n, at))
            if n is not None and n.kind in ("firing", "level_up"):
                self._alert_task(entity_id, st, out, oa, n.at)

    def _alert(self, entity_id: str, source: str, st: EntityState, oa: OpenAlert, why: list[Contribution],
               note: Notification | None = None, at: float | None = None) -> Alert:
        item = self.catalog.items.get(oa.item_id) if oa.item_id else None
        lc = oa.lc
        level = Level(oa.level)
        name = st.name or entity_id
        status_zh = {"pending": "待定", "firing": "预警", "acknowledged": "已签收", "disposing": "处置中",
                     "resolved": "已解除", "closed": "已关闭"}.get(oa.status, oa.status)
        message = note.text_zh if note is not None else (
            f"【{level.zh}{status_zh}】{'' if name.startswith(st.township) else st.township}{name}:{oa.title}。"
            + (f"牵头单位:{self.catalog.dept_name(oa.departments[0])}。" if oa.departments else ""))
        is_open = oa.status in ("firing", "acknowledged", "disposing")
        return Alert(
            alert_id=oa.alert_id, revision=oa.revision, fingerprint=oa.fingerprint, entity_id=entity_id,
            entity_name=name, entity_kind=st.kind, township=st.township, item_id=oa.item_id,
            item_name=item.name if item else "待专班研判", rule=oa.rule, level=level, level_zh=level.zh,
            status=AlertStatus(oa.status), score=min(100.0, max(0.0, oa.score)), title=oa.title,
            message=message, explanation=why, lead_department=oa.departments[0], departments=list(oa.departments),
            first_seen=_dt(oa.first_seen), last_seen=_dt(oa.last_seen),
            updated_at=_dt(at if at is not None else self.clock()), source_event_id=source,
            notification=note.kind if note is not None else None,
            recipients=list(note.departments) if note is not None else [],
            ack_due=_dt(lc.ack_due) if is_open and lc.ack_due else None,
            dispose_due=_dt(lc.dispose_due) if is_open and lc.dispose_due else None,
            flapping=lc.flapping,
            evidence_hash=oa.evidence.hash if oa.evidence is not None else "",
            transfer=lc.transfer_status,
            url=f"{self.web_url}/alerts/{oa.alert_id}" if self.web_url else "",
        )


def _level_score(level: str) -> float:
    return {"blue": 40.0, "yellow": 60.0, "orange": 80.0, "red": 95.0}[level]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)

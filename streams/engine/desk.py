"""The alert desk: raises, feeds and clears alerts, runs every lifecycle step, and publishes its
result — the revision bookkeeping, the audit chain and one alert revision per notification.

A handler says *what happened* in one call (``raise_alert``, ``clear``, ``revise``, ``feedback``,
``transfer`` …); the desk keeps the lifecycle's revision before the step, takes the step and
publishes what it changed, so that triple is written once, here (``publish``).

>>> from datetime import datetime, timezone
>>> from detectors.rules import Hit
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import Complaint
>>> desk = Desk(Context.of(load_county(), clock=lambda: 0.0))
>>> st, out = EntityState(kind="catering", township="城关镇", name="A"), Outcome()
>>> ev = Complaint(event_id="c1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...                source="12345", channel="12345", category="food_poisoning", text="腹泻")
>>> oa = desk.raise_alert(ev, st, out, Hit("rule.complaint.food_poisoning", "orange", "食物中毒投诉", 1.0), [])
>>> oa.status, [a.notification for a in out.alerts], len(out.transitions) > 0
('firing', ['firing'], True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from detectors.rules import Hit
from riskwatch.domain.lifecycle import AlertLifecycle, FeedbackOutcome, Notification
from schemas.events import Contribution, Event, SensorReading
from schemas.privacy import mask_pii
from schemas.vocabulary import LEVELS
from streams.engine import orders, plans, texts
from streams.engine.bundle import open_bundle
from streams.engine.chain import transition_rows
from streams.engine.context import Context
from streams.engine.outcome import Outcome
from streams.engine.revision import alert, level_score
from streams.engine.state import EntityState, OpenAlert

Crime = list[tuple[str, str]]  # suspected-crime flags: (flag, reason)


class Desk:
    """Owns every change of an alert: one method per kind of transition."""

    __slots__ = ("cx",)

    def __init__(self, cx: Context) -> None:
        self.cx = cx

    def route(self, st: EntityState, item_id: int | None, level: str = "blue") -> tuple[int | None, tuple[str, ...]]:
        cx = self.cx
        if not st.kind:  # not (yet) in the registry: the task-force office decides
            return None, (cx.catalog.taskforce_office,)
        if item_id is not None and item_id not in cx.catalog.items:
            item_id = None
        d = cx.router.route(item_id, st.kind, level, st.township)
        return d.item_id, tuple(d.departments)

    # --- a detector's condition holds, or no longer holds ----------------------------------------
    def raise_alert(
        self,
        ev: Event,
        st: EntityState,
        out: Outcome,
        hit: Hit,
        why: list[Contribution],
        item_id: int | None = None,
        score: float | None = None,
        crime: Crime | None = None,
    ) -> OpenAlert:
        """A detector's condition holds: open an alert (pending or firing), or feed the open one."""
        cx = self.cx
        item_id, depts = self.route(st, item_id, hit.level)
        fp = f"{ev.entity_id}|{item_id or 0}|{hit.rule}"
        t = ev.occurred_at.timestamp()
        score = level_score(hit.level) if score is None else score
        if not hit.rule.startswith("model."):
            st.risk.learn_one(t, hit.rule, level_score(hit.level) / 100.0, cx.fusion)
        oa = st.alerts.get(fp)
        if oa is not None and oa.lc.status != "closed":  # open, pending, or resolved within its grace period
            oa.hits += 1
            oa.ok_streak = 0
            oa.last_seen = max(oa.last_seen, t)
            up = LEVELS.index(hit.level) > LEVELS.index(oa.lc.level)
            if up:
                oa.title = hit.title
            rev = oa.lc.revision
            notes = cx.lifecycle.observe(
                oa.lc,
                t,
                max(score, cx.lifecycle.policy.hysteresis.enter),
                level=hit.level if up else None,
                departments=depts if up else None,
                silences=cx.silences,
            )
            self.publish(ev.entity_id, ev.event_id, st, out, oa, why, notes, rev)
            return oa
        return self._open(ev, st, out, hit, why, fp, item_id, depts, score, crime)

    def _open(
        self,
        ev: Event,
        st: EntityState,
        out: Outcome,
        hit: Hit,
        why: list[Contribution],
        fp: str,
        item_id: int | None,
        depts: tuple[str, ...],
        score: float,
        crime: Crime | None,
    ) -> OpenAlert:
        cx, lc = self.cx, self.cx.lifecycle
        t = ev.occurred_at.timestamp()
        episode = st.episodes.get(fp, 0) + 1
        st.episodes[fp] = episode
        alert_id = hashlib.blake2b(f"{fp}#{episode}".encode(), digest_size=10).hexdigest()
        # a confirmed rule (several hits), an inspection finding, a complaint or a video detection is a
        # fact: it fires at once; a single reading or a model score waits out the pending period
        immediate = hit.confirm > 1 or not isinstance(ev, SensorReading) and not hit.rule.startswith("model.")
        lst, notes = lc.open(
            alert_id,
            ev.entity_id,
            hit.rule,
            item_id,
            hit.level,
            depts,
            at=t,
            score=max(score, lc.policy.hysteresis.enter),
            title=hit.title,
            entity_name=st.name or ev.entity_id,
            silences=cx.silences,
            immediate=immediate,
        )
        oa = OpenAlert(
            alert_id=alert_id,
            fingerprint=fp,
            rule=hit.rule,
            item_id=item_id,
            level=hit.level,
            status=lst.status,
            revision=0,
            first_seen=t,
            last_seen=t,
            title=hit.title,
            departments=depts,
            score=score,
            lc=lst,
        )
        st.alerts[fp] = oa
        if cx.evidence:
            oa.evidence = open_bundle(cx.rules, ev, st, alert_id, hit, why, crime)
            out.evidence.append(oa.evidence.seal_first())
        self.publish(ev.entity_id, ev.event_id, st, out, oa, why, notes, 0)
        return oa

    def clear(self, ev: Event, st: EntityState, out: Outcome, oa: OpenAlert) -> None:
        """The alert's condition no longer holds (in-limit readings, a clean inspection, low risk)."""
        oa.last_seen = max(oa.last_seen, ev.occurred_at.timestamp())
        rev = oa.lc.revision
        notes = self.cx.lifecycle.observe(oa.lc, ev.occurred_at, 0.0, silences=self.cx.silences)
        self.publish(ev.entity_id, ev.event_id, st, out, oa, [], notes, rev)

    def revise(
        self,
        ev: Event,
        st: EntityState,
        out: Outcome,
        oa: OpenAlert,
        title: str,
        score: float,
        level: str,
        why: list[Contribution],
    ) -> None:
        """The open risk alert's score or level moved (always a new revision)."""
        lc = self.cx.lifecycle
        t = ev.occurred_at.timestamp()
        oa.title, oa.score = title, score
        oa.last_seen = max(oa.last_seen, t)
        rev = oa.lc.revision
        notes = lc.observe(oa.lc, t, max(score, lc.policy.hysteresis.enter), level=level, silences=self.cx.silences)
        self.publish(ev.entity_id, ev.event_id, st, out, oa, why, notes, rev, force=True)

    # --- people and offices act on an alert ------------------------------------------------------
    def transfer(self, entity_id: str, st: EntityState, out: Outcome, oa: OpenAlert, crime: Crime, at: float) -> None:
        """A suspected crime: the case goes to the police (and others, routing.yaml case_transfer)."""
        to = self.cx.router.config.case_transfer.targets([f for f, _ in crime])
        rev = oa.lc.revision
        reasons = mask_pii(";".join(dict.fromkeys(r for _, r in crime)))
        notes = self.cx.lifecycle.transfer(oa.lc, to, at, reasons, oa.evidence.hash if oa.evidence is not None else "")
        self.publish(entity_id, "router", st, out, oa, [], notes, rev)

    def feedback(
        self,
        ev: Event,
        st: EntityState,
        out: Outcome,
        oa: OpenAlert,
        dept: str,
        status: str,
        comment: str,
        user: str,
        transfer: bool = False,
    ) -> None:
        """A receiving department's feedback (签收, 处置中, 办结, 非本部门 …); with ``transfer``, a case
        transfer's receiver accepting or declining it (行刑衔接)."""
        lcy, rev, at = self.cx.lifecycle, oa.lc.revision, ev.occurred_at
        res = (
            lcy.on_transfer_feedback(oa.lc, dept, status, at, comment, user=user)
            if transfer
            else lcy.on_feedback(oa.lc, dept, status, at, comment, self.cx.silences, user=user)
        )
        self._answer(ev, st, out, oa, rev, res)

    def reassign(
        self, ev: Event, st: EntityState, out: Outcome, oa: OpenAlert, by: str, to: list[str], comment: str, user: str
    ) -> bool:
        """Only the office may (Lifecycle.reassign refuses anyone else: a dead letter with the reason).
        True when the step was accepted."""
        cx = self.cx
        rev = oa.lc.revision
        res = cx.lifecycle.reassign(oa.lc, by, to, ev.occurred_at, comment, cx.silences, user=user)
        self._answer(ev, st, out, oa, rev, res)
        return res.rejected is None

    def _answer(self, ev: Event, st: EntityState, out: Outcome, oa: OpenAlert, rev: int, res: FeedbackOutcome) -> None:
        if res.rejected:
            out.rejected = res.rejected
            return
        self.publish(ev.entity_id, ev.event_id, st, out, oa, [], res.notifications, rev)

    # --- time passes ---------------------------------------------------------------------------------
    def seal_due(self, entity_id: str, st: EntityState, out: Outcome, now: float, source: str) -> None:
        """Bundles whose after-window has passed are sealed as version 2 (recorded in the chain)."""
        for oa in list(st.alerts.values()):
            d = oa.evidence
            if d is None or d.final or now < d.end:
                continue
            out.evidence.append(d.seal(d.end))
            rev = oa.lc.revision
            n_items = len(out.evidence[-1]["header"]["items"])
            self.cx.lifecycle.record(
                oa.lc, d.end, "evidence", "system", texts.evidence_sealed(d.version, d.hash, n_items, d.first_hash)
            )
            self.publish(entity_id, source, st, out, oa, [], [], rev, force=True, at=d.end)

    def close_quiet(self, ev: Event, st: EntityState, out: Outcome) -> None:
        """Resolved alerts whose grace period passed by this entity's own event time are closed
        (and leave the state) here too, not only by the deadline timer."""
        t = ev.occurred_at.timestamp()
        lcy = self.cx.lifecycle
        grace = lcy.policy.close_grace_minutes * 60
        for fp, oa in list(st.alerts.items()):
            lc = oa.lc
            if (
                lc.status == "resolved"
                and not (st.orders and orders.holds(st, oa.alert_id))
                and not lc.flapping
                and lc.resolved_at is not None
                and t >= lc.resolved_at + grace
            ):
                rev = lc.revision
                self.publish(ev.entity_id, ev.event_id, st, out, oa, [], lcy.tick(lc, t, self.cx.silences), rev)
                if lc.status == "closed":
                    del st.alerts[fp]

    def tick(self, entity_id: str, st: EntityState, out: Outcome, now: float, source: str = "timer") -> None:
        """Pending alerts fire, overdue ones are urged and escalated, resolved ones close (and leave)."""
        for fp, oa in list(st.alerts.items()):
            if oa.lc.status == "resolved" and st.orders and orders.holds(st, oa.alert_id):
                continue  # its outcome ordered rectification: it closes only when its orders close
            rev = oa.lc.revision
            notes = self.cx.lifecycle.tick(oa.lc, now, self.cx.silences)
            self.publish(entity_id, source, st, out, oa, [], notes, rev, at=now)
            if oa.lc.status == "closed":
                del st.alerts[fp]

    # --- after every step ------------------------------------------------------------------------
    def publish(
        self,
        entity_id: str,
        source: str,
        st: EntityState,
        out: Outcome,
        oa: OpenAlert,
        why: list[Contribution],
        notes: list[Notification],
        rev_before: int,
        force: bool = False,
        at: float | None = None,
    ) -> None:
        """After a lifecycle step: record its transitions, and one alert revision per notification
        (sent to the notification's departments) or, without one, a state update for alerts.all."""
        cx = self.cx
        lc: AlertLifecycle = oa.lc
        oa.status, oa.level, oa.departments = lc.status, lc.level, tuple(lc.departments)
        new = lc.revision - rev_before
        if new <= 0 and not notes and not force:
            return
        if new > 0:
            transition_rows(entity_id, st, oa, new, cx.evidence, out.transitions)
        each: Sequence[Notification | None] = notes or (None,)
        for n in each:
            oa.revision += 1
            out.alerts.append(
                alert(cx.catalog, cx.web_url, entity_id, source, st, oa, why, n, at if at is not None else cx.clock())
            )
            if n is not None and n.kind in ("firing", "level_up"):
                plans.alert_task(cx, entity_id, st, out, oa, n.at)

"""Risk fusion glue: rate surges and the inspection-outcome signal feed the entity's fused risk
(``detectors/fusion.py``, weights and thresholds in ``riskwatch/data/fusion.yaml``); a score that
moved becomes a :class:`~streams.engine.outcome.RiskRecord`, and a level change raises, revises or
resolves the ``model.risk`` alert through the desk.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import Complaint
>>> cx = Context.of(load_county())
>>> st = EntityState(kind="catering")
>>> ev = Complaint(event_id="c1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...                source="12345", channel="12345", category="hygiene", text="脏")
>>> rate(cx, ev, st, "complaint"); sorted(st.rates)
['complaint']
"""

from __future__ import annotations

from detectors.fusion import LEVELS as RISK_LEVELS
from detectors.inspection import to_days
from detectors.rates import RateConfig, RateSurprise
from detectors.rules import Hit
from schemas.events import Complaint, Event, InspectionResult, VideoDetection
from schemas.vocabulary import ALERT_STATUSES, DONE_STATUSES, LEVELS
from streams.engine import texts
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome, RiskRecord
from streams.engine.state import EntityState

OPEN = tuple(s for s in ALERT_STATUSES if s not in DONE_STATUSES)  # not yet resolved, pending included


def rate(cx: Context, ev: Event, st: EntityState, signal: str) -> None:
    """A complaint or video detection: the entity's rate of them against its kind's prior."""
    key = (signal, st.kind)
    cfg = cx.rate_cfg.get(key)
    if cfg is None:
        spec = cx.fusion.rates.get(signal)
        cfg = cx.rate_cfg[key] = (
            RateConfig()
            if spec is None
            else RateConfig(
                prior_rate=spec.per_kind.get(st.kind, spec.default),
                prior_days=spec.prior_days,
                window=spec.window_days,
                half_life=spec.half_life_days,
                l_max=spec.l_max,
            )
        )
    t = ev.occurred_at.timestamp()
    r = st.rates.get(signal)
    if r is None:
        r = st.rates[signal] = RateSurprise(t)
    r.learn_one(t, cfg)
    s = r.score_one(t, cfg)
    if s > 0.0:
        st.risk.learn_one(t, f"rate.{signal}", s, cx.fusion)


def inspection_signal(cx: Context, ev: Event, st: EntityState) -> None:
    if cx.model.n_seen < cx.fusion.inspection_min_seen:
        return  # a model that has seen few inspections is noise, not evidence
    base = cx.model.base_rate
    p = cx.model.predict_proba_one(st.history.features(to_days(ev.occurred_at), {}))
    st.risk.set_one(ev.occurred_at.timestamp(), "inspection.p", max(0.0, (p - base) / (1.0 - base)))


def fuse(cx: Context, desk: Desk, ev: Event, st: EntityState, out: Outcome) -> None:
    """Update the entity's fused risk; emit a risk record and raise/revise/resolve model.risk."""
    risk = st.risk
    if isinstance(ev, (InspectionResult, Complaint, VideoDetection)):
        inspection_signal(cx, ev, st)
    if not risk.signals and not risk.level:
        return  # nothing to fuse (the common case of a quiet entity's sensor reading)
    cfg = cx.fusion
    t = ev.occurred_at.timestamp()
    item_id = desk.route(st, ev.item_id if isinstance(ev, InspectionResult) else None)[0]
    rs = risk.update(t, cfg, item_id)
    if not rs.changed and abs(rs.score - risk.emitted) < cfg.emit_min_delta:
        return
    top = rs.top
    risk.emitted = rs.score
    out.risk.append(RiskRecord(ev.entity_id, ev.occurred_at, rs.score, rs.level, item_id, top, risk.tier(cfg)))
    if not rs.changed:
        return
    fp = f"{ev.entity_id}|{item_id or 0}|model.risk"
    oa = st.alerts.get(fp)
    floor = RISK_LEVELS.index(cfg.alert_min_level)
    rank = RISK_LEVELS.index(rs.level)
    title = texts.risk_title(rs.score)
    if rank >= floor:
        if oa is not None and oa.status in OPEN:
            desk.revise(ev, st, out, oa, title, rs.score, rs.level, top)
            return
        # the entity's own rule alert already says it: an open one at this level or above, or the very
        # rule that is the risk's strongest signal, still in the state (open or resolved, not yet
        # closed) — an elevator's fault-code case is worked as that case, not again as a risk alert
        # (3 of the 4 false risk alerts of `riskwatch eval simulated --seed 7` were exactly this)
        strongest = top[0].signal if top else ""
        covered = any(
            not a.rule.startswith("model.")
            and (
                (a.status not in ("resolved", "closed") and LEVELS.index(a.level) + 1 >= rank)
                or (a.rule == strongest and a.status != "closed")
            )
            for a in st.alerts.values()
        )
        # a new risk alert only when the level goes UP into the alert range (a decaying risk
        # passing through orange after a rule alert resolved is not news)
        if not covered and rank > RISK_LEVELS.index(rs.previous):
            desk.raise_alert(
                ev, st, out, Hit("model.risk", rs.level, title, rs.score), top, item_id=item_id, score=rs.score
            )
    elif oa is not None and oa.status in OPEN:
        oa.score = rs.score
        desk.clear(ev, st, out, oa)

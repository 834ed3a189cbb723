"""The processing step: one validated event + its entity's state → alerts and notices.

This is the user-facing processing API: pure Python, no Kafka, so every rule of the product is
testable on its own. The Faust runtime (``streams/runtime/``) feeds it events partition by partition,
through ``streams/engine/batch.py``. The dispatcher only checks delivery (redelivered, duplicate),
picks the handler of the event's kind (``streams/engine/handlers/``), then updates the fused risk
(``risk.py``) and lets the alert desk (``desk.py``) seal due evidence and close quiet alerts.

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
>>> r.score, r.level, r.item_id, r.top[0].signal, r.tier
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

import pickle
import time
from collections.abc import Callable
from typing import TypeVar, cast

from detectors.fusion import FusionConfig, load_fusion
from detectors.inspection import InspectionOutcomeModel
from detectors.rules import RuleSet
from riskwatch.domain.catalog import Catalog
from riskwatch.domain.county import County
from riskwatch.domain.lifecycle import Lifecycle, Silence, load_lifecycle
from riskwatch.domain.planning import SpotCheckConfig, load_spot_checks
from riskwatch.domain.routing import Router, load_routing
from riskwatch.settings import DATA_DIR
from schemas.events import (
    Complaint,
    DeviceEvent,
    DisposalFeedback,
    EntityEvent,
    Event,
    InspectionResult,
    InspectionTask,
    SensorReading,
    VideoDetection,
)
from streams.engine import orders
from streams.engine.context import Clock, Context
from streams.engine.desk import Desk
from streams.engine.handlers import complaint, device, feedback, inspection, registry, sensor, task, video
from streams.engine.outcome import Notice, Outcome, RiskRecord
from streams.engine.risk import fuse
from streams.engine.state import RECENT_IDS, EntityState, Where

__all__ = ["Processor", "Outcome", "Notice", "RiskRecord", "EntityState"]

Handler = Callable[[Context, Desk, Event, EntityState, Outcome], None]
E = TypeVar("E", bound=Event)


def _entry(
    kind: type[E], handle: Callable[[Context, Desk, E, EntityState, Outcome], None]
) -> tuple[type[Event], Handler]:
    """One line of :data:`HANDLERS`, checked: ``handle`` takes events of ``kind``. The table is looked up by
    ``type(ev)``, so a handler only ever gets its own kind: that makes the narrowing cast safe."""
    return kind, cast(Handler, handle)


# the handler of each input kind (a new kind: a module in handlers/ and a line here)
HANDLERS: dict[type[Event], Handler] = dict(
    [
        _entry(EntityEvent, registry.handle),
        _entry(SensorReading, sensor.handle),
        _entry(VideoDetection, video.handle),
        _entry(Complaint, complaint.handle),
        _entry(InspectionResult, inspection.handle),
        _entry(DisposalFeedback, feedback.handle),
        _entry(InspectionTask, task.handle),
        _entry(DeviceEvent, device.handle),
    ]
)


class Processor:
    """Turns events into alert revisions; owns no I/O. ``clock`` is injectable for tests."""

    __slots__ = ("cx", "desk", "_handlers")

    def __init__(
        self,
        catalog: Catalog,
        rules: RuleSet,
        clock: Clock = time.time,
        fusion: FusionConfig | None = None,
        model: InspectionOutcomeModel | None = None,
        router: Router | None = None,
        lifecycle: Lifecycle | None = None,
        planning: SpotCheckConfig | None = None,
        web_url: str = "",
        evidence: bool = True,
    ):
        self._bind(
            Context(
                catalog,
                rules,
                lifecycle=lifecycle or load_lifecycle(catalog=catalog),
                router=router or load_routing(catalog=catalog),
                fusion=fusion or load_fusion(DATA_DIR / "fusion.yaml"),
                planning=planning or load_spot_checks(catalog=catalog).config,
                model=model or InspectionOutcomeModel(),
                clock=clock,
                web_url=web_url.rstrip("/"),
                evidence=evidence,
            )
        )

    def _bind(self, cx: Context) -> None:
        self.cx = cx
        self.desk = Desk(cx)
        self._handlers = HANDLERS

    @classmethod
    def from_county(
        cls,
        county: County,
        clock: Clock = time.time,
        model: InspectionOutcomeModel | None = None,
        web_url: str = "",
        evidence: bool = True,
    ) -> Processor:
        """A processor on the county's data as loaded once by :func:`riskwatch.domain.county.load_county`."""
        p = cls.__new__(cls)
        p._bind(Context.of(county, clock, model, web_url, evidence))
        return p

    # what the runtime and tests reach: the catalog, the silences in force, the shared model
    @property
    def catalog(self) -> Catalog:
        return self.cx.catalog

    @property
    def silences(self) -> list[Silence]:
        return self.cx.silences

    @silences.setter
    def silences(self, value: list[Silence]) -> None:
        self.cx.silences = value

    @property
    def model(self) -> InspectionOutcomeModel:
        return self.cx.model

    def model_dumps(self) -> bytes:
        """The per-worker inspection-outcome model, for a checkpoint."""
        return pickle.dumps(self.cx.model, protocol=pickle.HIGHEST_PROTOCOL)

    def model_loads(self, raw: bytes) -> None:
        self.cx.model = pickle.loads(raw)

    # --- entry points ----------------------------------------------------------------------------
    def process(self, ev: Event, st: EntityState, where: Where, keep: int = RECENT_IDS) -> Outcome:
        """``keep``: how many recent event ids the entity's ring holds after this one (more than
        ``RECENT_IDS`` for the readings of a gateway batch, so that a replayed batch is skipped
        reading by reading)."""
        out = Outcome()
        first = st.first_delivery(ev.event_id, where)
        if first is not None:
            if tuple(first) == tuple(where):
                out.redelivered = True
            else:
                out.duplicate_of = first
                out.rejected = (
                    f"duplicate event_id {ev.event_id!r}: first seen at "
                    f"{first[0]}[{first[1]}]@{first[2]}; events must have unique ids"
                )
            return out
        st.seen(ev.event_id, where, keep, checked=True)
        out.at = t = ev.occurred_at.timestamp()
        if t > st.last_seen:
            st.last_seen = t
        handler = self._handlers.get(type(ev))
        cx = self.cx
        if handler is not None:
            handler(cx, self.desk, ev, st, out)
        if not out.rejected and ev.entity_id != "unknown":
            fuse(cx, self.desk, ev, st, out)
        if st.alerts and not out.rejected:  # a refused event goes to the dead letters: it changes no alert
            if cx.evidence:
                self.desk.seal_due(ev.entity_id, st, out, t, ev.event_id)
            self.desk.close_quiet(ev, st, out)
        if st.orders and not out.rejected:  # order deadlines on the entity's own event time
            orders.tick(cx, st, out, ev.entity_id, t)
        return out

    def tick(self, entity_id: str, st: EntityState, now: float) -> Outcome:
        """Time passing without events: pending alerts fire, overdue ones are urged and escalated,
        resolved ones close after their grace period (closed ones leave the state). The runtime calls
        it for every entity with alerts, from a timer, with its clock (wall or stream time)."""
        out = Outcome()
        if self.cx.evidence:
            self.desk.seal_due(entity_id, st, out, now, "timer")
        self.desk.tick(entity_id, st, out, now)
        if st.orders:
            orders.tick(self.cx, st, out, entity_id, now)
        return out

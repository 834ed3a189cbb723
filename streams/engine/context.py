"""What every handler reads: the county's configuration, the shared inspection-outcome model, the
silences in force and two small per-worker caches. One :class:`Context` per ``Processor``.

>>> from riskwatch.domain.county import load_county
>>> cx = Context.of(load_county())
>>> cx.evidence, cx.silences, cx.catalog.taskforce_office
(True, [], 'taskforce')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from detectors.fusion import FusionConfig
from detectors.inspection import InspectionOutcomeModel
from detectors.rates import RateConfig
from detectors.rules import RuleSet
from riskwatch.domain.catalog import Catalog
from riskwatch.domain.county import County
from riskwatch.domain.lifecycle import Lifecycle, Silence
from riskwatch.domain.planning import SpotCheckConfig
from riskwatch.domain.routing import Router

Clock = Callable[[], float]


@dataclass(slots=True)
class Context:
    catalog: Catalog
    rules: RuleSet
    # pending, hysteresis, flapping, deadlines, urging and escalation (riskwatch/data/lifecycle.yaml)
    lifecycle: Lifecycle
    # who receives an alert: the item's lead and cooperating departments + rules in data
    # (riskwatch/data/routing.yaml, e.g. red alerts also to the task-force office)
    router: Router
    fusion: FusionConfig  # riskwatch/data/fusion.yaml
    # joint inspections: merge window and which alert levels ask for an on-site check (spot_checks.yaml)
    planning: SpotCheckConfig
    # shared per worker process: learns from this worker's inspections (see streams/engine/dispatch.py)
    model: InspectionOutcomeModel
    clock: Clock = time.time  # the revision's updated_at; injectable for tests
    web_url: str = ""  # workbench base URL (no trailing slash): each alert revision links to its page
    # evidence bundles + the audit hash chain (docs/evidence-and-audit.md); off only to measure their cost
    evidence: bool = True
    silences: list[Silence] = field(default_factory=list)  # maintenance windows; the runtime keeps them current
    rate_cfg: dict[tuple[str, str], RateConfig] = field(default_factory=dict)  # (signal, kind) -> config
    windows: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # channel -> (len, before s, trim s)

    @classmethod
    def of(
        cls,
        county: County,
        clock: Clock = time.time,
        model: InspectionOutcomeModel | None = None,
        web_url: str = "",
        evidence: bool = True,
    ) -> Context:
        return cls(
            county.catalog,
            county.rules,
            county.lifecycle,
            county.router,
            county.fusion,
            county.spot_checks.config,
            model or InspectionOutcomeModel(),
            clock,
            web_url.rstrip("/"),
            evidence,
        )

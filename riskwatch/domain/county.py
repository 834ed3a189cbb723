"""The county's data, loaded once: one typed object the processor, the planner and the CLI share.

Everything the county changes without a code change lives in ``riskwatch/data/``: the supervision
catalog (departments, entity kinds, items), threshold rules, risk fusion, alert routing, the alert
life cycle and the spot-check policy. :func:`load_county` reads and cross-checks all of them;
every error names the file and line.

>>> county = load_county()
>>> county.catalog.departments["amr"].name
'县市场监管局'
>>> county.rules.on_sensor("cold_chain_temp", 9.5).level
'orange'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detectors.fusion import FusionConfig, load_fusion
from detectors.rules import RuleSet, load_rules
from riskwatch.domain.catalog import Catalog, load_catalog
from riskwatch.domain.lifecycle import Lifecycle, load_lifecycle
from riskwatch.domain.planning import SpotCheckPlanner, load_spot_checks
from riskwatch.domain.routing import Router, load_routing
from riskwatch.settings import DATA_DIR


@dataclass(frozen=True)
class County:
    """The county's rules as data: catalog, thresholds, fusion, routing, life cycle, spot checks."""

    catalog: Catalog
    rules: RuleSet
    fusion: FusionConfig
    router: Router
    lifecycle: Lifecycle
    spot_checks: SpotCheckPlanner


def load_county(
    data_dir: Path | str | None = None,
    *,
    catalog_path: Path | str | None = None,
    rules_path: Path | str | None = None,
    lifecycle_path: Path | str | None = None,
) -> County:
    """Load and cross-check the county's data files (``riskwatch/data`` unless told otherwise)."""
    d = Path(data_dir) if data_dir else DATA_DIR
    catalog = load_catalog(catalog_path or d / "catalog.yaml")
    return County(
        catalog=catalog,
        rules=load_rules(rules_path or d / "rules.yaml"),
        fusion=load_fusion(d / "fusion.yaml"),
        router=load_routing(d / "routing.yaml", catalog=catalog),
        lifecycle=load_lifecycle(lifecycle_path or d / "lifecycle.yaml", catalog=catalog),
        spot_checks=load_spot_checks(d / "spot_checks.yaml", catalog=catalog),
    )


def county_from_settings(settings) -> County:
    """The county as the settings name it (catalog, rules and life-cycle paths may be overridden)."""
    return load_county(
        catalog_path=settings.catalog_path, rules_path=settings.rules_path, lifecycle_path=settings.lifecycle_path
    )

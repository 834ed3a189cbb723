"""The supervision catalog is data; settings errors are readable."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from detectors.rules import load_rules
from riskwatch.domain.catalog import CatalogError, load_catalog
from riskwatch.settings import DATA_DIR, load_settings
from schemas.events import EntityEvent, SensorReading
from streams.engine.dispatch import Processor
from streams.engine.state import EntityState

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_f199ea9704559ddc.txt"
BASE = (DATA_DIR / "catalog.yaml").read_text(encoding="utf-8")

NINTH = """
  - id: 9
    code: school_canteens
    name: 学校食堂食品安全综合监管
    field: food
    objects: [school_canteen]
    main_task: 监管学校食堂食品安全,组织开展联合检查。
    lead: amr
    cooperating: [edu, health]
    level: 县级
"""


def test_catalog_matches_the_seed_document():
    cat = load_catalog()
    assert len(cat.items) == 8
    seed = SEED.read_text(encoding="utf-8") if SEED.exists() else ""
    for d in cat.departments.values():
        if d.code != "taskforce" and seed:
            assert d.name in seed, d.name
    assert cat.items[7].lead == "health" and set(cat.items[7].cooperating) == {"police", "commerce", "amr"}
    assert len(cat.items[5].cooperating) == 11
    assert [i.id for i in cat.items_for_kind("medical_institution")] == [3, 6]
    assert cat.departments["taskforce"].seated_at == "amr"


def test_a_ninth_item_needs_no_code_change(tmp_path):
    text = BASE.replace(
        "  - {code: new_business,", "  - {code: school_canteen,       name: 学校食堂}\n  - {code: new_business,"
    )
    p = tmp_path / "catalog.yaml"
    p.write_text(text + NINTH, encoding="utf-8")
    cat = load_catalog(p)
    assert cat.items[9].name == "学校食堂食品安全综合监管"
    # and the pipeline routes an alert of the new item to its lead and cooperating departments
    proc = Processor(cat, load_rules(DATA_DIR / "rules.yaml"))
    st = EntityState()
    from datetime import datetime

    t = datetime(2026, 11, 27, tzinfo=UTC)
    proc.process(
        EntityEvent(
            event_id="r",
            entity_id="S1",
            occurred_at=t,
            source="t",
            action="registered",
            name="舞阳县第一中学食堂",
            kind="school_canteen",
            township="舞泉镇",
        ),
        st,
        ("r", 0, 0),
    )
    out = proc.process(
        SensorReading(
            event_id="s",
            entity_id="S1",
            occurred_at=t,
            source="t",
            device_id="d",
            channel="storage_temp",
            value=35.0,
            unit="C",
        ),
        st,
        ("s", 0, 0),
    )
    assert out.alerts[0].item_id == 9 and out.alerts[0].departments == ["amr", "edu", "health"]


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda t: t.replace("lead: health", "lead: xx"), "line 1"),
        (lambda t: t.replace("  - id: 8\n", "  - id: 7\n"), "duplicate id 7"),
        (lambda t: t.replace("    lead: health\n", ""), "(items.6.lead): Field required"),
        (
            lambda t: t.replace("cooperating: [emergency, eco]", "cooperating: [emergency, nobody]"),
            "unknown department code 'nobody'",
        ),
    ],
)
def test_catalog_errors_name_the_line(tmp_path, mutate, needle):
    p = tmp_path / "catalog.yaml"
    bad = mutate(BASE)
    assert bad != BASE
    p.write_text(bad, encoding="utf-8")
    with pytest.raises(CatalogError) as e:
        load_catalog(p)
    msg = str(e.value)
    assert "catalog.yaml line " in msg
    if needle != "line 1":
        assert needle in msg, msg
    else:  # the line named is the line of the bad value
        line = int(msg.split("line ")[1].split()[0])
        assert "lead: xx" in bad.splitlines()[line - 1]


def test_settings_errors_are_readable(monkeypatch):
    monkeypatch.setenv("RISKWATCH_PARTITIONS", "zero")
    monkeypatch.setenv("RISKWATCH_CLICKHOUSE_URL", "mysql://x")
    with pytest.raises(SystemExit) as e:
        load_settings()
    msg = str(e.value)
    assert "RISKWATCH_PARTITIONS" in msg and "valid integer" in msg
    assert "RISKWATCH_CLICKHOUSE_URL" in msg and "chdb://" in msg


def test_every_setting_is_documented():
    from riskwatch.settings import Settings

    for name, f in Settings.model_fields.items():
        assert f.description and len(f.description) > 10, name

"""Routing as data: base receivers from the catalog, rules in order, validation, the route tester."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from typer.testing import CliRunner

import riskwatch.domain.routing as routing_mod
from riskwatch.cli.planning import route_app
from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.routing import RoutingError, load_routing

CAT = load_catalog()
ROUTER = load_routing(catalog=CAT)


def test_doctests() -> None:
    assert doctest.testmod(routing_mod).failed == 0


def test_base_receivers_are_lead_then_cooperating() -> None:
    d = ROUTER.route(4, "produce_market", "yellow", "吴城镇")
    assert d.departments == ["amr", "commerce", "police", "agri"]
    assert d.lead == "amr"
    assert d.matched_rules == []
    assert d.reasons_for("amr") == ["牵头单位:事项4 食用农产品集中交易市场规范化监管(produce_market)"]
    assert d.reasons_for("agri")[0].startswith("配合单位:事项4")


def test_lead_other_than_amr() -> None:
    d = ROUTER.route(7, "medical_beauty", "blue")
    assert d.departments == ["health", "police", "commerce", "amr"]


def test_red_adds_taskforce_and_special_equipment_adds_emergency_reason() -> None:
    d = ROUTER.route(8, "special_equipment", "red", "舞泉镇")
    assert d.departments == ["amr", "emergency", "police", "fire", "urban", "taskforce"]
    assert d.matched_rules == ["red_to_taskforce", "special_equipment_red_to_emergency"]
    # emergency is already a cooperating department: both causes are listed, no duplicate
    assert d.departments.count("emergency") == 1
    assert len(d.reasons_for("emergency")) == 2
    assert "special_equipment_red_to_emergency" in d.reasons_for("emergency")[1]
    orange = ROUTER.route(8, "special_equipment", "orange")
    assert "taskforce" not in orange.departments


def test_unassigned_kind_goes_to_taskforce_and_stops() -> None:
    d = ROUTER.route(None, "catering", "red", "舞泉镇")
    # continue: false on the unassigned rule: red_to_taskforce is not evaluated
    assert d.departments == ["taskforce"]
    assert d.matched_rules == ["unassigned_to_taskforce"]
    assert d.item_id is None


def test_item_defaults_from_kind_and_other_items_are_told() -> None:
    d = ROUTER.route(None, "medical_institution", "yellow")
    assert d.item_id == 3
    assert d.departments == ["amr", "medinsure", "health"]
    assert "事项6" in d.reasons_for("health")[0]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "routing.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_matchers_and_continue(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        """
rules:
  - name: town
    description: 吴城镇的橙色及以上预警报应急局
    match: {township: 吴城镇, level_at_least: orange, item: [1, retail_pharmacy]}
    add: [emergency]
    continue: false
  - name: after
    description: 不应被评估
    match: {}
    add: [justice]
  - name: kind
    description: 按主体类型
    match: {entity_kind: food_producer}
    add: [health]
""",
    )
    r = load_routing(p, catalog=CAT)
    assert r.route(2, "retail_pharmacy", "red", "吴城镇").departments == ["amr", "medinsure", "emergency"]
    # yellow < orange: the first rule does not match, the catch-all does, then the kind rule
    assert r.route(1, "food_producer", "yellow", "吴城镇").departments == [
        "amr",
        "emergency",
        "eco",
        "justice",
        "health",
    ]
    assert r.route(2, "retail_pharmacy", "red", "舞泉镇").matched_rules == ["after"]


@pytest.mark.parametrize(
    "rule, loc, what",
    [
        ("{name: x, description: d, match: {}, add: [nosuch]}", "rules.0.add.0", "unknown department code 'nosuch'"),
        ("{name: x, description: d, match: {item: 99}, add: [amr]}", "rules.0.match.item.0", "unknown item 99"),
        ("{name: x, description: d, match: {item: bogus}, add: [amr]}", "rules.0.match.item.0", "unknown item 'bogus'"),
        (
            "{name: x, description: d, match: {entity_kind: karaoke}, add: [amr]}",
            "rules.0.match.entity_kind.0",
            "unknown entity kind 'karaoke'",
        ),
        (
            "{name: x, description: d, match: {level: purple}, add: [amr]}",
            "rules.0.match.level",
            "unknown level 'purple'",
        ),
    ],
)
def test_validation_names_rule_index_and_field(tmp_path: Path, rule: str, loc: str, what: str) -> None:
    p = _write(
        tmp_path, f"rules:\n  - {{name: ok, description: d, add: [amr]}}\n  - {rule}\n".replace("rules.0", "rules.1")
    )
    with pytest.raises(RoutingError) as e:
        load_routing(p, catalog=CAT)
    msg = str(e.value)
    assert loc.replace("rules.0", "rules.1") in msg and what in msg
    assert "line 3" in msg


def test_route_tester_cli() -> None:
    res = CliRunner().invoke(
        route_app,
        ["test", "--item", "8", "--entity-kind", "special_equipment", "--level", "red", "--township", "舞泉镇"],
    )
    assert res.exit_code == 0, res.output
    out = res.output
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()[:2] in {f"{n}." for n in range(1, 10)}]
    assert [ln.split()[1] for ln in lines] == ["amr", "emergency", "police", "fire", "urban", "taskforce"]
    assert lines[0].startswith("1. amr") and "县市场监管局" in lines[0] and "牵头单位" in lines[0]
    assert "red_to_taskforce" in lines[5] and "专班办公室" in lines[5]
    assert "special_equipment_red_to_emergency" in lines[1]
    assert "特种设备综合监管" in out and "红色" in out


def test_route_tester_item_without_entity_kind() -> None:
    res = CliRunner().invoke(route_app, ["test", "--item", "8", "--level", "red"])
    assert res.exit_code == 0, res.output
    assert "special_equipment 特种设备生产、使用单位" in res.output and "6. taskforce" in res.output


def test_route_tester_item_with_several_kinds_shows_each(tmp_path) -> None:
    import yaml

    from riskwatch.domain.catalog import DATA_DIR as CATALOG_DIR

    data = yaml.safe_load((CATALOG_DIR / "catalog.yaml").read_text(encoding="utf-8"))
    item = next(i for i in data["items"] if i["id"] == 3)
    item["objects"] = ["medical_institution", "retail_pharmacy"]
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    res = CliRunner().invoke(route_app, ["test", "--item", "3", "--level", "yellow", "--catalog", str(path)])
    assert res.exit_code == 0, res.output
    assert "2 类监管对象" in res.output
    kinds = [ln.split()[2] for ln in res.output.splitlines() if "主体类型 kind" in ln]
    assert kinds == ["medical_institution", "retail_pharmacy"]
    res = CliRunner().invoke(route_app, ["test", "--level", "yellow"])
    assert res.exit_code != 0 and "give --item" in str(res.exception or res.output)


def test_route_tester_cli_item_code_and_unassigned_and_errors() -> None:
    r = CliRunner()
    res = r.invoke(
        route_app, ["test", "--item", "retail_pharmacy", "--entity-kind", "retail_pharmacy", "--level", "blue"]
    )
    assert res.exit_code == 0 and "1. amr" in res.output and "2. medinsure" in res.output
    res = r.invoke(route_app, ["test", "--entity-kind", "new_business", "--level", "yellow"])
    assert res.exit_code == 0 and "unassigned_to_taskforce" in res.output and "1. taskforce" in res.output
    res = r.invoke(route_app, ["test", "--item", "42", "--entity-kind", "catering", "--level", "red"])
    assert res.exit_code != 0 and "unknown item '42'" in str(res.exception or res.output)

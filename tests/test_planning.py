"""Joint inspections (能合尽合) and 双随机、一公开 spot checks by credit tier."""

from __future__ import annotations

import csv
import doctest
import io
import math
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import riskwatch.domain.planning as planning_mod
from riskwatch.cli.planning import plan_app
from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.planning import (
    CSV_HEADERS,
    InspectionTask,
    PlanningError,
    SpotCheckConfig,
    SpotCheckPlanner,
    SpotEntity,
    draw_spot_checks,
    load_spot_checks,
    merge_tasks,
    read_entities_csv,
    spot_checks_csv,
)

CAT = load_catalog()
PLANNER = load_spot_checks(catalog=CAT)
DAY = 86400.0


def test_doctests() -> None:
    assert doctest.testmod(planning_mod).failed == 0


# --- joint inspections ------------------------------------------------------------------------------
def test_merge_within_window_led_by_item_lead() -> None:
    tasks = [
        InspectionTask("t-eco", "E1", "eco", due=2 * DAY, item_id=1, source="plan", ref="P-2026-11"),
        InspectionTask("t-em", "E1", "emergency", due=0.0, item_id=1, source="alert", ref="A1"),
        InspectionTask("t-amr", "E1", "amr", due=1 * DAY, item_id=1, source="plan"),
        InspectionTask("t-late", "E1", "eco", due=9 * DAY, item_id=1),  # outside the 7-day window
        InspectionTask("t-other", "E2", "police", due=1 * DAY, item_id=4),
    ]
    out = merge_tasks(tasks, window=timedelta(days=7), catalog=CAT)
    assert [(j.entity_id, j.due / DAY) for j in out] == [("E1", 0.0), ("E2", 1.0), ("E1", 9.0)]
    joint = out[0]
    assert joint.joint and joint.lead == "amr"
    assert joint.departments == ("amr", "emergency", "eco")  # lead first, then by due time
    assert [t.task_id for t in joint.tasks] == ["t-em", "t-amr", "t-eco"]
    assert {t.source for t in joint.tasks} == {"alert", "plan"}
    assert joint.item_ids == (1,)
    assert not out[1].joint and out[1].departments == ("police",)  # one department alone: its own visit
    assert not out[2].joint and out[2].lead == "eco"
    # deterministic ids, independent of input order
    assert merge_tasks(list(reversed(tasks)), 7 * DAY, CAT)[0].inspection_id == joint.inspection_id


def test_lead_joins_even_without_a_task_and_other_leads() -> None:
    out = merge_tasks(
        [InspectionTask("a", "E5", "police", 0.0, 8), InspectionTask("b", "E5", "fire", 3600.0, 8)],
        window=DAY,
        catalog=CAT,
    )
    assert len(out) == 1 and out[0].departments == ("amr", "police", "fire") and out[0].lead == "amr"
    mb = merge_tasks([InspectionTask("a", "E6", "amr", 0.0, 7), InspectionTask("b", "E6", "police", 10.0, 7)], DAY, CAT)
    assert mb[0].lead == "health" and mb[0].departments == ("health", "amr", "police")
    # two items on one entity (medical institution: drugs → amr, devices → amr): one visit
    mi = merge_tasks(
        [InspectionTask("a", "E7", "medinsure", 0.0, 3), InspectionTask("b", "E7", "health", 10.0, 6)], DAY, CAT
    )
    assert mi[0].lead == "amr" and mi[0].item_ids == (3, 6) and mi[0].departments == ("amr", "medinsure", "health")
    # no item (unassigned kind): the earliest task's department leads
    na = merge_tasks([InspectionTask("a", "E8", "police", 5.0), InspectionTask("b", "E8", "amr", 10.0)], DAY, CAT)
    assert na[0].lead == "police" and na[0].departments == ("police", "amr")
    # the same department twice: one visit
    same = merge_tasks([InspectionTask("a", "E9", "amr", 0.0, 1), InspectionTask("b", "E9", "amr", 5.0, 1)], DAY, CAT)
    assert len(same) == 1 and same[0].departments == ("amr",) and len(same[0].tasks) == 2


def test_merge_accepts_datetimes_and_refuses_unknown_codes() -> None:
    t = datetime(2026, 11, 27, 9, 0)
    out = merge_tasks(
        [InspectionTask("a", "E1", "amr", t, 2), InspectionTask("b", "E1", "medinsure", t + timedelta(hours=30), 2)],
        timedelta(days=2),
        CAT,
    )
    assert len(out) == 1 and out[0].joint
    with pytest.raises(ValueError, match="unknown department code 'xx'"):
        merge_tasks([InspectionTask("a", "E1", "xx", 0.0)], DAY, CAT)


def test_spot_checks_become_joint_with_an_alert_task() -> None:
    ent = [SpotEntity("E100", "special_equipment", "舞泉镇", "D")]
    sc = draw_spot_checks(ent, "2026-11", seed=5, planner=PLANNER)[0]
    tasks = sc.as_tasks(due=DAY) + [InspectionTask("alert-task", "E100", "police", 2 * DAY, 8, "alert", "A9")]
    out = merge_tasks(tasks, window=7 * DAY, catalog=CAT)
    assert len(out) == 1 and out[0].lead == "amr"
    assert set(out[0].departments) == {"amr", sc.inspectors[1].department, "police"}


# --- 双随机、一公开 ------------------------------------------------------------------------------------
def _population(per_tier: int, kind: str = "retail_pharmacy") -> list[SpotEntity]:
    return [SpotEntity(f"{tier}{i:05d}", kind, "舞泉镇", tier) for tier in "ABCD" for i in range(per_tier)]


def _binom_interval(n: int, p: float, conf: float = 0.999) -> tuple[int, int]:
    """Central binomial interval [lo, hi] holding at least ``conf`` of the mass (exact, via lgamma)."""
    if p >= 1.0:
        return n, n
    logs = [
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
        for k in range(n + 1)
    ]
    pmf = [math.exp(x) for x in logs]
    tail = (1 - conf) / 2
    acc, lo = 0.0, 0
    while acc + pmf[lo] < tail:
        acc += pmf[lo]
        lo += 1
    acc, hi = 0.0, n
    while acc + pmf[hi] < tail:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def test_bernoulli_draws_follow_tier_rates() -> None:
    planner = SpotCheckPlanner(PLANNER.config.model_copy(update={"method": "bernoulli"}), CAT)
    ents = _population(2000)
    checks = planner.draw(ents, "2026-11", seed=20261127)
    drawn = Counter(c.tier for c in checks)
    for tier, t in planner.config.tiers.items():
        lo, hi = _binom_interval(2000, t.rate)
        assert lo <= drawn[tier] <= hi, (tier, drawn[tier], (lo, hi))
    assert drawn["D"] == 2000
    assert {c.item_id for c in checks} == {2}


def test_proportion_draws_meet_the_published_rate_exactly() -> None:
    ents = _population(2000) + _population(7, kind="food_producer")
    checks = PLANNER.draw(ents, "2026-11", seed=1)
    drawn = Counter((c.item_id, c.tier) for c in checks)
    assert [drawn[(2, t)] for t in "ABCD"] == [60, 200, 600, 2000]
    assert [drawn[(1, t)] for t in "ABCD"] == [1, 1, 3, 7]  # ceil: at least the rate, never zero
    assert len({(c.item_id, c.entity_id) for c in checks}) == len(checks)  # nobody twice per item
    # every A-tier entity has the same chance: inclusion over many seeds within the binomial bound
    small = _population(100)
    hits = Counter(c.entity_id for s in range(400) for c in PLANNER.draw(small, "2026-11", s) if c.tier == "B")
    lo, hi = _binom_interval(400, 0.10)
    assert all(lo <= hits[f"B{i:05d}"] <= hi for i in range(100))


def test_reproducible_with_seed_and_month() -> None:
    ents = _population(300)
    a = draw_spot_checks(ents, "2026-11", seed=42, planner=PLANNER)
    assert a == draw_spot_checks(list(reversed(ents)), "2026-11", seed=42, planner=PLANNER)
    assert [c.entity_id for c in a] != [
        c.entity_id for c in draw_spot_checks(ents, "2026-11", seed=43, planner=PLANNER)
    ]
    assert [c.entity_id for c in a] != [
        c.entity_id for c in draw_spot_checks(ents, "2026-12", seed=42, planner=PLANNER)
    ]


def test_two_inspectors_from_different_departments() -> None:
    ents = [SpotEntity(f"{k}-{i}", k, "吴城镇", "D") for k in CAT.entity_kinds for i in range(30)]
    checks = PLANNER.draw(ents, "2026-11", seed=9)
    roster_dept = {p.code: d for d, ps in PLANNER.config.rosters.items() for p in ps}
    assert {c.item_id for c in checks} == set(CAT.items)  # catering/new_business: no item, not drawn
    assert Counter(c.item_id for c in checks)[3] == 30 and Counter(c.item_id for c in checks)[6] == 30
    partners_seen: dict[int, set] = {}
    for c in checks:
        item = CAT.items[c.item_id]
        a, b = c.inspectors
        assert a.department == item.lead == c.lead and b.department in item.cooperating
        assert a.department != b.department
        assert roster_dept[a.code] == a.department and roster_dept[b.code] == b.department
        partners_seen.setdefault(c.item_id, set()).add(b.department)
    assert len(partners_seen[5]) > 3  # the cooperating department is drawn at random too


def test_unknown_tier_or_month_refused() -> None:
    with pytest.raises(ValueError, match="unknown credit tier 'E'"):
        PLANNER.draw([SpotEntity("x", "retail_pharmacy", "舞泉镇", "E")], "2026-11", 1)
    with pytest.raises(ValueError, match="YYYY-MM"):
        PLANNER.draw([], "2026-13", 1)


def test_csv_has_chinese_headers_and_codes() -> None:
    checks = PLANNER.draw(_population(20), "2026-11", seed=3)
    rows = list(csv.DictReader(io.StringIO(spot_checks_csv(checks, CAT))))
    assert list(rows[0]) == CSV_HEADERS and len(rows) == len(checks)
    r = rows[0]
    assert r["事项代码"] == "retail_pharmacy" and r["事项名称"] == "零售药店监督检查"
    assert r["牵头单位代码"] == "amr" and r["牵头单位"] == "县市场监管局"
    assert r["检查人员1单位代码"] == "amr" and r["检查人员2单位代码"] == "medinsure"
    assert r["抽查编号"].startswith("SC202611-02-")


def test_tier_assignment_is_deterministic_and_follows_the_mix() -> None:
    tiers = Counter(PLANNER.tier_for(f"E{i:06d}") for i in range(20000))
    for t, share in PLANNER.config.default_tier_mix.items():
        assert abs(tiers[t] / 20000 - share) < 0.015
    assert PLANNER.tier_for("E000001") == PLANNER.tier_for("E000001")


def test_config_validation(tmp_path: Path) -> None:
    src = Path(planning_mod.DEFAULT_SPOT_CHECKS_PATH).read_text(encoding="utf-8")
    bad = tmp_path / "spot_checks.yaml"
    bad.write_text(src.replace("  health:\n", "  nosuch:\n"), encoding="utf-8")
    with pytest.raises(PlanningError, match=r"rosters.nosuch\): unknown department code 'nosuch'"):
        load_spot_checks(bad, catalog=CAT)
    cfg = PLANNER.config.model_dump()
    del cfg["rosters"]["health"]
    with pytest.raises(
        PlanningError,
        match="item 6 \\(medical_devices\\): none of the cooperating departments health has an inspector roster",
    ):
        SpotCheckPlanner(SpotCheckConfig.model_validate(cfg), CAT)
    cfg = PLANNER.config.model_dump()
    del cfg["rosters"]["amr"]
    with pytest.raises(
        PlanningError, match="item 1 \\(food_producer\\): lead department 'amr' has no inspector roster"
    ):
        SpotCheckPlanner(SpotCheckConfig.model_validate(cfg), CAT)
    bad.write_text(src.replace("A: 0.30, B: 0.50", "A: 0.40, B: 0.50"), encoding="utf-8")
    with pytest.raises(PlanningError, match="default_tier_mix must sum to 1"):
        load_spot_checks(bad, catalog=CAT)


def test_entities_csv_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "e.csv"
    p.write_text("entity_id,kind,township,tier\nE1,retail_pharmacy,舞泉镇,A\nE2,karaoke,舞泉镇,B\n", encoding="utf-8")
    with pytest.raises(PlanningError, match=r"e.csv line 3 \(kind\): unknown entity kind 'karaoke'"):
        read_entities_csv(p, PLANNER)
    p.write_text("entity_id,kind,township,tier\nE1,retail_pharmacy,舞泉镇,\n", encoding="utf-8")
    assert read_entities_csv(p, PLANNER)[0].tier == PLANNER.tier_for("E1")


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_spot_checks_from_csv(tmp_path: Path) -> None:
    src = tmp_path / "entities.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["entity_id", "kind", "township", "tier"])
        for i in range(100):
            w.writerow([f"P{i:03d}", "retail_pharmacy", "舞泉镇", "ABCD"[i % 4]])
        w.writerow(["C001", "catering", "吴城镇", "A"])
    out = tmp_path / "plan.csv"
    args = ["spot-checks", "--month", "2026-11", "--seed", "7", "--entities", str(src), "--out", str(out)]
    res = CliRunner().invoke(plan_app, args)
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("2 retail_pharmacy") and ln.split()[2] == "C")
    assert line.split()[3:5] == ["25", "8"]  # population 25, drawn ceil(0.3 × 25) = 8
    assert "catering 餐饮服务单位 1" in res.output
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert len(rows) == 1 + 3 + 8 + 25
    first = out.read_bytes()
    CliRunner().invoke(plan_app, args)
    assert out.read_bytes() == first  # same seed → same file


def test_cli_spot_checks_default_county(tmp_path: Path) -> None:
    out = tmp_path / "county.csv"
    res = CliRunner().invoke(plan_app, ["spot-checks", "--month", "2026-11", "--scale", "0.2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "模拟县" in res.output and "8 special_equipment" in res.output
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert rows and {r["事项ID"] for r in rows} <= {str(i) for i in CAT.items}
    bad = CliRunner().invoke(plan_app, ["spot-checks", "--month", "11/2026"])
    assert bad.exit_code != 0

"""联合信用监管: the credit exports (``riskwatch import credit``) become ``events.credit`` records matched
to registry entities by credit code; bad rows are refused with reasons; the records are stored in the
``credit`` table (a real chDB engine, FINAL) where a repair ends a listing; the 双随机 draw runs over the
live registry with the official tiers and achieves the data's rate per tier; alerts about a listed
entity remind the receiving department of its measures in the notification text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from edge.imports.rows import Queued, Ready, Refusal
from edge.imports.run import run_import
from edge.matching import Matcher, RegistryEntry
from notify.bridge import am_alert
from notify.robots import _riskwatch_text
from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.credit import ENTITY_SQL, CreditRow, CreditStatus, load_credit, reminder_text
from riskwatch.domain.planning import LIVE_ENTITIES_SQL, live_entities, load_spot_checks, tier_rates
from riskwatch.settings import Settings
from schemas.events import Alert, CreditRecord, EntityEvent
from sinks.clickhouse import make_client
from sinks.migrations import migrate
from sinks.rows import COLUMNS, event_rows, registry_row
from tests.samples import DINER, FOOD, code, write_csv, write_xlsx

CAT = load_catalog()
SRC = "import:credit:op"
LIST_HEADERS = ["统一社会信用代码", "主体名称", "列入日期", "列入原因", "作出决定机关", "移出日期", "移出原因"]
TIER_HEADERS = ["统一社会信用代码", "主体名称", "分类等级", "认定日期", "认定机关"]


def matcher() -> Matcher:
    return Matcher(
        [
            RegistryEntry(FOOD, "舞阳县某某食品有限公司", "舞泉镇", "舞泉镇人民路1号", "SC11041112100001"),
            RegistryEntry(DINER, "舞阳县老王饭店(个体)", "吴城镇", "吴城镇建设街8号", "JY24111210000002"),
        ]
    )


def _import(path: Path, **kw):
    return run_import(path.read_bytes(), path.name, "credit", catalog=CAT, matcher=matcher(), source=SRC, **kw)


def _by_row(rep):
    return {o.row: o for o in [*rep.preview]}


def test_tier_export_with_bad_rows_refused_with_reasons(tmp_path):
    bad_code = FOOD[:-1] + ("0" if FOOD[-1] != "0" else "1")
    f = write_xlsx(
        tmp_path / "信用风险分类结果.xlsx",
        TIER_HEADERS,
        [
            [FOOD, "舞阳县某某食品有限公司", "C", "2026-11-01", "县市场监管局"],
            [bad_code, "舞阳县某某食品有限公司", "A", "2026-11-01", "县市场监管局"],
            [DINER, "舞阳县老王饭店(个体)", "E类", "2026-11-01", "县市场监管局"],
            [DINER, "舞阳县老王饭店(个体)", "B类", "2026年11月2日", "县市场监管局"],
        ],
    )
    rep = _import(f, dry_run=True, report_dir=tmp_path)
    rows = _by_row(rep)
    assert isinstance(rows[2], Ready) and rows[2].topic == "events.credit"
    ev = rows[2].event
    assert isinstance(ev, CreditRecord)
    assert (ev.entity_id, ev.kind.value, ev.tier, ev.listed_on, ev.authority) == (
        FOOD,
        "tier",
        "C",
        date(2026, 11, 1),
        "县市场监管局",
    )
    assert ev.match is not None and ev.match.method.value == "credit_code"
    assert isinstance(rows[3], Refusal) and "校验位错误" in rows[3].reason
    assert isinstance(rows[4], Refusal) and "分类等级「E类」不在映射中" in rows[4].reason
    assert isinstance(rows[5], Ready) and rows[5].event.tier == "B"
    assert rep.summary() == "共 4 行:将发送 2 条事件,待人工匹配 0 条,拒收 2 行"
    report = rep.report_path.read_text(encoding="utf-8-sig")
    assert "校验位错误" in report and "E类" in report


def test_list_exports_need_their_kind_and_unknown_entities_are_queued(tmp_path):
    stranger = code("91411121MA4000099")
    rows = [
        [FOOD, "舞阳县某某食品有限公司", "2026-03-01", "提供虚假材料取得许可", "县市场监管局", "", ""],
        [stranger, "漯河市从未登记商贸有限公司", "2026-03-02", "未按期公示年报", "县市场监管局", "", ""],
        ["", "舞阳县老王饭店(个体)", "2026-03-03", "x", "县市场监管局", "", ""],
        [DINER, "舞阳县老王饭店(个体)", "2026-03-04", "x", "县市场监管局", "2026-04-01", ""],
    ]
    f = write_csv(tmp_path / "名单.csv", LIST_HEADERS, rows)
    unknown_kind = _import(f, dry_run=True)
    assert all(isinstance(o, Refusal) and "--list" in o.reason for o in unknown_kind.preview if o.row != 4)
    rep = _import(f, dry_run=True, credit_list="serious_list")
    out = _by_row(rep)
    assert isinstance(out[2], Ready) and out[2].event.kind.value == "serious_list"
    assert isinstance(out[3], Queued) and out[3].item.event_topic == "events.credit"
    assert isinstance(out[4], Refusal) and out[4].reason == "缺少统一社会信用代码"
    assert isinstance(out[5], Refusal) and out[5].reason == "有移出日期但缺少移出原因"
    # a 名单类型 column wins over the option
    g = write_csv(tmp_path / "异常.csv", ["名单类型", *LIST_HEADERS], [["经营异常名录", *rows[0]]])
    ev = _import(g, dry_run=True, credit_list="serious_list").preview[0].event
    assert ev.kind.value == "abnormal_list"


@pytest.fixture
def ch(tmp_path):
    c = make_client(f"chdb://{tmp_path / 'ch'}")
    migrate(c)
    return c


def _store(ch, events) -> None:
    for table, rows in event_rows(events).items():
        ch.insert(table, rows, column_names=list(COLUMNS[table]), database="riskwatch")


def _query(ch, sql: str, **params) -> list[dict]:
    res = ch.query(sql.replace("{db}", "riskwatch"), parameters=params or None)
    return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]


def _status(ch, entity_id: str) -> CreditStatus:
    return CreditStatus.of(CreditRow.from_row(r) for r in _query(ch, ENTITY_SQL, e=entity_id))


def test_repair_ends_a_listing_and_the_history_keeps_it(tmp_path, ch):
    listed = [FOOD, "舞阳县某某食品有限公司", "2026-03-01", "提供虚假材料取得许可", "县市场监管局", "", ""]
    first = _import(write_csv(tmp_path / "a.csv", LIST_HEADERS, [listed]), dry_run=True, credit_list="serious_list")
    _store(ch, [o.event for o in first.preview if isinstance(o, Ready)])
    st = _status(ch, FOOD)
    assert [r.kind for r in st.active] == ["serious_list"] and st.active[0].reason == "提供虚假材料取得许可"
    assert "限制参加政府采购" in reminder_text(st, load_credit(), "drc")

    repaired = [*listed[:5], "2026-09-01", "已纠正违法行为并履行行政处罚,信用修复"]
    rep = _import(write_csv(tmp_path / "b.csv", LIST_HEADERS, [repaired]), dry_run=True, credit_list="serious_list")
    _store(ch, [o.event for o in rep.preview if isinstance(o, Ready)])
    _store(ch, [o.event for o in first.preview if isinstance(o, Ready)])  # the old export again: no undo
    st = _status(ch, FOOD)
    assert not st.active and reminder_text(st, load_credit(), "drc") == ""
    (h,) = st.history
    assert (h.listed_on, h.removed_on, h.why_listed, h.reason) == (
        date(2026, 3, 1),
        date(2026, 9, 1),
        "提供虚假材料取得许可",
        "已纠正违法行为并履行行政处罚,信用修复",
    )


def _registry(ch, n: int) -> list[str]:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [code(f"91411121MA5{i:06d}") for i in range(n)]
    kinds = ["catering", "retail_pharmacy", "food_producer", "special_equipment"]
    evs = [
        EntityEvent(
            event_id=f"r{i}",
            entity_id=e,
            occurred_at=t,
            source="test",
            action="registered",
            name=f"主体{i}",
            kind=kinds[i % len(kinds)],
            township="舞泉镇",
        )
        for i, e in enumerate(ids)
    ]
    ch.insert("registry", [registry_row(e) for e in evs], column_names=list(COLUMNS["registry"]), database="riskwatch")
    return ids


def _tier(e: str, tier: str, on: date) -> CreditRecord:
    return CreditRecord(
        event_id=f"t-{e}-{on}",
        entity_id=e,
        occurred_at=datetime(on.year, on.month, on.day, tzinfo=UTC),
        source=SRC,
        kind="tier",
        tier=tier,
        listed_on=on,
        authority="县市场监管局",
    )


def test_draw_over_the_live_registry_meets_the_rate_of_each_tier(ch):
    planner = load_spot_checks(catalog=CAT)
    ids = _registry(ch, 400)
    ents, untiered = live_entities(_query(ch, LIVE_ENTITIES_SQL), planner)
    assert len(ents) == 400 and untiered == 400 and {e.tier for e in ents} == {"B"}  # no official tier yet
    before = {c.entity_id for c in planner.draw(ents, "2026-12", 3)}

    tiers = "AABBBBCCD"  # the official tiers of the first entities; a later determination replaces an earlier one
    _store(ch, [_tier(e, tiers[i % len(tiers)], date(2026, 11, 1)) for i, e in enumerate(ids[:360])])
    _store(ch, [_tier(ids[1], "D", date(2026, 11, 20))])  # A on 11-01, D on 11-20
    ents, untiered = live_entities(_query(ch, LIVE_ENTITIES_SQL), planner)
    assert untiered == 40 and next(e.tier for e in ents if e.entity_id == ids[1]) == "D"
    checks = planner.draw(ents, "2026-12", 3)
    assert {c.entity_id for c in checks} != before  # the imported tiers change the draw
    rates = {t.tier: t for t in tier_rates(planner, ents, checks)}
    for t, r in rates.items():
        assert r.rate == planner.config.tiers[t].rate
        assert r.population > 0
        assert r.rate <= r.achieved < r.rate + 0.1, (t, r.achieved)  # ceil per item × tier stratum
    assert rates["D"].achieved == 1.0
    drawn_d = {c.entity_id for c in checks if c.tier == "D"}
    assert ids[1] in drawn_d


def _alert(**kw) -> Alert:
    t = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    base = dict(
        alert_id="a1",
        revision=4,
        fingerprint=f"{FOOD}|1|r",
        entity_id=FOOD,
        entity_name="舞阳县某某食品有限公司",
        township="舞泉镇",
        item_id=1,
        item_name="食品生产",
        rule="rule.x",
        level="orange",
        level_zh="橙色",
        status="firing",
        score=80,
        title="冷库温度超限",
        message="",
        lead_department="amr",
        departments=["amr", "drc"],
        first_seen=t,
        last_seen=t,
        updated_at=t,
        source_event_id="ev1",
        notification="firing",
        recipients=["amr", "drc"],
        ack_due=t + timedelta(hours=1),
    )
    return Alert(**{**base, **kw})


def test_the_notification_reminds_the_receiving_department_of_its_measures():
    st = CreditStatus.of([CreditRow("serious_list", "", date(2026, 3, 1), None, "x", "", "县市场监管局")])
    cfg = load_credit()
    reminder = reminder_text(st, cfg, "amr")
    a = am_alert(_alert(), "amr", Settings(_env_file=None), CAT, datetime(2026, 5, 1, 3, 0, tzinfo=UTC), reminder)
    text = a["annotations"]["text"]
    assert "【联合惩戒提醒】该主体在严重违法失信名单(2026-03-01 列入,县市场监管局)" in text
    assert "限制担任其他企业法定代表人" in text and "政府采购" not in text  # amr's measures, not drc's
    assert "【联合惩戒提醒】" in _riskwatch_text(a["annotations"], a["labels"])  # the robots rebuild it
    plain = am_alert(_alert(), "amr", Settings(_env_file=None), CAT, datetime(2026, 5, 1, 3, 0, tzinfo=UTC))
    assert "credit" not in plain["annotations"] and "联合惩戒" not in plain["annotations"]["text"]


def test_measures_data_names_catalog_departments_or_marks_outside_bodies():
    cfg = load_credit()
    assert set(cfg.lists) == {"abnormal_list", "serious_list"}
    for lst in cfg.lists.values():
        for m in lst.measures:
            assert m.department in CAT.departments or not m.department.isascii(), m
            assert m.confirm or m.basis, f"{m}: an unconfirmed measure needs its basis"


def test_plan_cli_prints_the_achieved_rate_per_tier_against_the_data(tmp_path):
    from typer.testing import CliRunner

    from riskwatch.cli.planning import plan_app

    out = tmp_path / "sc.csv"
    args = ["spot-checks", "--month", "2026-12", "--simulated", "--scale", "0.2", "--out", str(out)]
    res = CliRunner().invoke(plan_app, args)
    assert res.exit_code == 0, res.output
    assert "模拟县" in res.output and "按信用等级汇总" in res.output
    lines = res.output.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("按信用等级汇总"))) + 2 :][:4]
    assert [x.split()[0] for x in table] == ["A", "B", "C", "D"]
    assert [x.split()[3] for x in table] == ["3%", "10%", "30%", "100%"]

"""`riskwatch route …` and `riskwatch plan …`: the routing tester and the monthly spot-check draw.

Two typer apps; the main CLI mounts them::

    app.add_typer(route_app, name="route")
    app.add_typer(plan_app, name="plan")

Neither needs Kafka. ``plan spot-checks`` draws over the live registry with the official credit tiers
(ClickHouse, or the worker's /query for the embedded store) and falls back to the simulated county
when the registry is empty or cannot be read (``--simulated`` asks for it; docs/credit.md).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import typer

route_app = typer.Typer(
    help="Alert routing: who receives an alert, and why (data: riskwatch/data/routing.yaml).", no_args_is_help=True
)
plan_app = typer.Typer(
    help="Inspection planning: 双随机、一公开 spot checks by credit tier (data: riskwatch/data/spot_checks.yaml).",
    no_args_is_help=True,
)


@route_app.callback()
def _route_group() -> None:
    """Alert routing (keeps `test` a subcommand)."""


@plan_app.callback()
def _plan_group() -> None:
    """Inspection planning (keeps `spot-checks` a subcommand)."""


def _catalog(path: Path | None):
    from riskwatch.domain.catalog import CatalogError, load_catalog

    try:
        return load_catalog(path)
    except CatalogError as e:
        raise SystemExit(str(e)) from None


@route_app.command("test")
def route_test(
    entity_kind: str | None = typer.Option(
        None, "--entity-kind", help="Entity kind code, e.g. special_equipment; default: each kind the item supervises"
    ),
    level: str = typer.Option(..., "--level", help="blue | yellow | orange | red"),
    item: str | None = typer.Option(None, "--item", help="Item id or code; default: the entity kind's first item"),
    township: str = typer.Option("", "--township", help="Township (乡镇), e.g. 舞泉镇"),
    routing: Path | None = typer.Option(None, "--routing", help="Routing file (default: bundled routing.yaml)"),
    catalog_path: Path | None = typer.Option(None, "--catalog", help="Catalog file (default: bundled catalog.yaml)"),
    suspected_crime: list[str] | None = typer.Option(
        None,
        "--suspected-crime",
        help="A suspected-crime flag (rules.yaml suspected_crime), e.g. violation:D05, "
        "complaint:counterfeit_drug, food_poisoning_cluster; repeatable",
    ),
) -> None:
    """Print who receives an alert and why (which rule), and with ``--suspected-crime`` the case
    transfer (案件移送), without running anything.

    With ``--item`` and no ``--entity-kind``, shows the routing for each kind of object the item
    supervises, one block per kind."""
    from riskwatch.domain.routing import RoutingError, load_routing
    from schemas.vocabulary import LEVELS, Level

    cat = _catalog(catalog_path)
    try:
        router = load_routing(routing, catalog=cat)
    except RoutingError as e:
        raise SystemExit(str(e)) from None
    item_id: int | None = None
    if item is not None:
        by_code = {i.code: i.id for i in cat.items_list}
        if item.isdigit() and int(item) in cat.items:
            item_id = int(item)
        elif item in by_code:
            item_id = by_code[item]
        else:
            raise SystemExit(
                f"riskwatch route test: unknown item {item!r}; known: "
                + ", ".join(f"{i.id}={i.code}" for i in cat.items_list)
            )
    if entity_kind is None and item_id is None:
        raise SystemExit(
            "riskwatch route test: give --item (routes each kind of object it supervises) or --entity-kind; "
            "`riskwatch catalog items` lists both"
        )
    if entity_kind is not None and entity_kind not in cat.entity_kinds:
        raise SystemExit(
            f"riskwatch route test: unknown entity kind {entity_kind!r}; known: {', '.join(cat.entity_kinds)}"
        )
    if level not in LEVELS:
        raise SystemExit(f"riskwatch route test: unknown level {level!r}; known: {', '.join(LEVELS)}")
    if entity_kind is not None and item_id is not None and entity_kind not in cat.items[item_id].objects:
        typer.echo(
            f"注意 note: 事项{item_id} 的监管对象不含 {entity_kind}(item {item_id} does not cover this kind)", err=True
        )
    kinds = [entity_kind] if entity_kind is not None else list(cat.items[item_id].objects)
    typer.echo(
        "预警路由测试 (routing test, nothing is sent)"
        + (f": 事项{item_id} 的 {len(kinds)} 类监管对象 (each kind the item supervises)" if len(kinds) > 1 else "")
    )
    for n, kind in enumerate(kinds):
        if n:
            typer.echo("")
        d = router.route(item_id, kind, level, township)
        it = cat.items.get(d.item_id) if d.item_id else None
        typer.echo(f"  事项 item:          {f'{it.id} {it.code} {it.name}' if it else '无(待专班研判 unassigned)'}")
        typer.echo(f"  主体类型 kind:      {kind} {cat.entity_kinds[kind].name}")
        typer.echo(f"  等级 level:         {level} {Level(level).zh}")
        typer.echo(f"  乡镇 township:      {township or '-'}")
        typer.echo(f"  命中规则 rules:     {', '.join(d.matched_rules) or '-'}")
        typer.echo(f"  接收单位 receivers ({len(d.departments)}, 牵头单位在前 lead first):")
        for line in router.explain_zh(d):
            typer.echo(f"    {line}")
    if suspected_crime:
        ct = router.config.case_transfer
        typer.echo(f"案件移送 case transfer (行刑衔接, routing.yaml case_transfer): {ct.description}")
        typer.echo(f"  涉嫌犯罪标记 flags:  {', '.join(suspected_crime)}")
        for n, dept in enumerate(ct.targets(suspected_crime), 1):
            why = (
                "移送对象 to"
                if dept in ct.to
                else "按标记追加 also: " + ", ".join(f for f in suspected_crime if dept in ct.also.get(f, ()))
            )
            typer.echo(f"  {n}. {dept:<10} {cat.dept_name(dept)} ← {why}")
        typer.echo(
            "  携带证据包 sha256;受理 accepted / 不予受理 declined(须说明理由,退回牵头单位 "
            f"{d.lead} {cat.dept_name(d.lead)})"
        )


def _width(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _ljust(s: str, n: int) -> str:
    return s + " " * max(0, n - _width(s))


def _rjust(s: str, n: int) -> str:
    return " " * max(0, n - _width(s)) + s


@plan_app.command("spot-checks")
def plan_spot_checks(
    month: str = typer.Option(..., "--month", help="YYYY-MM"),
    seed: int = typer.Option(0, "--seed", help="Draw seed (publish it with the list: anyone can re-draw)"),
    entities: Path | None = typer.Option(
        None,
        "--entities",
        help="CSV entity_id,kind,township,tier[,name]; default: the live registry (ClickHouse) with the "
        "official credit tiers, or the simulated county when the registry is empty",
    ),
    simulated: bool = typer.Option(False, "--simulated", help="Draw over the simulated county (demo)"),
    out: Path | None = typer.Option(None, "--out", help="Output CSV (default var/plans/spot_checks_<month>.csv)"),
    scale: float = typer.Option(1.0, "--scale", help="Simulated county size (simulated county only)"),
    sim_seed: int = typer.Option(7, "--sim-seed", help="Simulated county seed (simulated county only)"),
    config: Path | None = typer.Option(
        None, "--config", help="Spot-check data file (default: bundled spot_checks.yaml)"
    ),
    catalog_path: Path | None = typer.Option(None, "--catalog", help="Catalog file"),
    publish: bool = typer.Option(
        False,
        "--publish",
        help="Also publish every drawn check as inspection tasks on the task-force office's "
        "events.task.taskforce (run with the office's Kafka credentials, user dept-taskforce; the worker "
        "stores them and merges joint inspections)",
    ),
) -> None:
    """Draw the month's 双随机 spot checks per item × credit tier, print a summary and write the CSV."""
    from riskwatch.domain.planning import (
        MONTH_RE,
        PlanningError,
        SpotEntity,
        load_spot_checks,
        read_entities_csv,
        tier_rates,
        write_spot_checks_csv,
    )

    if not MONTH_RE.match(month):
        raise SystemExit(f"riskwatch plan spot-checks: --month must be YYYY-MM, got {month!r}")
    cat = _catalog(catalog_path)
    try:
        planner = load_spot_checks(config, catalog=cat)
        ents, origin = [], ""
        if entities is not None:
            ents = read_entities_csv(entities, planner)
            origin = str(entities)
        elif not simulated:
            ents, origin = _live(planner)
        if not ents and entities is None:
            from riskwatch.tools.simulator.county import CST, SimConfig, build_county

            y, m = map(int, month.split("-"))
            now = datetime(y, m, 1, tzinfo=CST)  # fixed clock: same county for the same month
            county = build_county(SimConfig(seed=sim_seed, scale=scale, now=now, start=now.replace(year=y - 1)))
            ents = [
                SpotEntity(e.entity_id, e.kind, e.township, planner.tier_for(e.entity_id), e.name)
                for e in county.entities
            ]
            origin = (
                (origin + ";" if origin else "") + f"模拟县 simulated county (seed {sim_seed}, scale {scale:g}; "
                "信用等级按默认比例确定性分配 tiers assigned deterministically)"
            )
    except PlanningError as e:
        raise SystemExit(f"riskwatch plan spot-checks: {e}") from None
    checks = planner.draw(ents, month, seed)
    rows = planner.summary(ents, checks)

    typer.echo(f"双随机抽查 spot checks {month}  seed={seed}  主体来源 entities: {origin}")
    typer.echo(
        _ljust("事项 item", 34)
        + _rjust("等级 tier", 10)
        + _rjust("总数 population", 18)
        + _rjust("抽取 drawn", 12)
        + _rjust("比例 rate", 11)
        + _rjust("实际 share", 12)
    )
    for r in rows:
        label = f"{r['item_id']} {r['item_code']}"
        typer.echo(
            f"{label:<34}{r['tier']:>10}{r['population']:>18}{r['drawn']:>12}{r['rate']:>11.0%}{r['share']:>12.1%}"
        )
    typer.echo("按信用等级汇总 per tier, all items (achieved vs the data's rate):")
    typer.echo(
        _ljust("等级 tier", 12)
        + _rjust("总数 population", 18)
        + _rjust("抽取 drawn", 12)
        + _rjust("数据比例 rate", 15)
        + _rjust("实际 achieved", 15)
    )
    for t in tier_rates(planner, ents, checks):
        typer.echo(f"{t.tier:<12}{t.population:>18}{t.drawn:>12}{t.rate:>15.0%}{t.achieved:>15.1%}")
    covered = {k for i in cat.items_list for k in i.objects}
    unassigned = Counter(e.kind for e in ents if e.kind not in covered)
    if unassigned:
        typer.echo(
            "无对应监管事项(不抽查,专班研判) unassigned kinds: "
            + ", ".join(f"{k} {cat.entity_kinds[k].name} {n}" for k, n in sorted(unassigned.items()))
        )
    path = write_spot_checks_csv(checks, out or Path("var/plans") / f"spot_checks_{month}.csv", cat)
    typer.echo(f"共抽取 {len(checks)} 项 total drawn; 已写入 written: {path}")
    if publish:
        n = _publish_tasks(checks, month, cat.taskforce_office)
        typer.echo(f"已发布 published {n} inspection tasks to events.task.{cat.taskforce_office}")


def _live(planner) -> tuple[list, str]:
    """The live registry's active entities with their latest official tier; ([], why) when the store
    cannot be read or the registry is empty (the caller falls back to the simulated county)."""
    from edge.matching import StoreUnavailable, store_rows
    from riskwatch.domain.planning import LIVE_ENTITIES_SQL, live_entities
    from riskwatch.settings import load_settings

    try:
        rows = store_rows(load_settings(), LIVE_ENTITIES_SQL)
    except StoreUnavailable as e:
        return [], f"名录库不可读 registry unavailable ({e})"
    ents, untiered = live_entities(rows, planner)
    if not ents:
        return [], "名录库为空 registry empty"
    return ents, (
        f"名录库 live registry ({len(ents)} 个主体;{untiered} 个无官方信用等级,按 {planner.config.untiered} 类抽取 "
        f"untiered → {planner.config.untiered})"
    )


def _publish_tasks(checks, month: str, office: str) -> int:
    """Each check → one InspectionTask per inspecting department, due at the end of the month, on the
    task-force office's task topic (the office organises the draw and may assign any department)."""
    import calendar

    import orjson

    from kafka import KafkaProducer
    from riskwatch.settings import load_settings
    from schemas.events import InspectionTask
    from streams.engine.identity import sender_topic

    s = load_settings()
    y, m = map(int, month.split("-"))
    tz = ZoneInfo("Asia/Shanghai")
    due = datetime(y, m, calendar.monthrange(y, m)[1], 17, 0, tzinfo=tz)
    now = datetime.now(tz)
    producer = KafkaProducer(**s.kafka_kwargs(), acks="all", linger_ms=20)
    n = 0
    try:
        for c in checks:
            for t in c.as_tasks(due):
                ev = InspectionTask(
                    event_id=t.task_id.replace(":", "-"),
                    entity_id=t.entity_id,
                    occurred_at=now,
                    source="spot-check-draw",
                    task_id=t.task_id.replace(":", "-"),
                    department=t.department,
                    due=due,
                    item_id=t.item_id,
                    kind="spot_check",
                    ref=c.check_id,
                    note=f"双随机抽查 {month}:" + "、".join(i.name for i in c.inspectors),
                )
                producer.send(
                    s.topic(sender_topic(InspectionTask.topic, office)),
                    key=t.entity_id.encode(),
                    value=orjson.dumps(ev.model_dump(mode="json")),
                )
                n += 1
        producer.flush(60)
    finally:
        producer.close()
    return n

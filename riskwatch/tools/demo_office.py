"""The demo's closing act: the loop after disposal (issue #22) and the task-force office's own work (#23), through
the real worker, after the simulated departments have stopped.

:func:`office_steps` is the one call ``riskwatch demo`` makes near its end; it returns the lines for the summary.
Each step reads what the simulated departments left (their 已处置 outcomes, the orders those opened, the 双告知
notices of the registrations) and does the rest as the people would, through the same contracts the workbench
produces (``DisposalFeedback``, ``InspectionResult``, ``NoticeAnswer``, the office's records on
``office.decisions``), then waits until the worker has stored the result:

1. **整改与复查** — the simulated departments (:class:`~riskwatch.tools.simulator.departments.FollowUpPlayer`)
   claim every open order (整改完成); each 复查 follows the ground truth: a seeded share was not really fixed, its
   复查 fails (the order re-opens with a new deadline and goes to the office), then it is claimed again and passes
   (销号). Without any order, one open alert is first confirmed with 责令整改 here;
2. **误报** — the 误报 outcomes with their reasons (one open alert is labelled here when the departments labelled
   none);
3. **预警准确率** — the precision table of ``sinks/precision.py`` by detector;
4. **双告知** — the simulated departments answer the open notices: 认领, a seeded share 有异议 (those go to the
   office's 研判), some silent (urged);
5. **议事会商** — convened on the order's alert and concluded with a decision that becomes the department's task,
   built with the functions ``web/routes/consult.py`` uses (``streams.engine.office`` records sealed into the
   office chain by ``web.routes.judge.publish``, the task by ``judge._build`` and the workbench's producer);
6. **研判** — the office's queue (``web.routes.judge.queue``), its size per kind;
7. **联合信用监管** — an official 信用风险分类结果 export written as xlsx, imported with ``riskwatch import credit``;
   the next 双随机 draw over the live registry before and after, its rate per tier against spot_checks.yaml.

Example (a running worker of ``settings``; the demo passes its own)::

    from rich.console import Console
    from riskwatch.domain.catalog import load_catalog
    lines = office_steps(settings, worker, Console(), load_catalog())
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from clickhouse_connect.driver.binding import finalize_query

from riskwatch.domain.catalog import Catalog
from riskwatch.settings import Settings
from riskwatch.tools.runner import WaitTimeout, consumer_lag, settings_env, wait_for
from riskwatch.tools.simulator.departments import FollowUpPlayer, OrderPlay
from schemas.vocabulary import FALSE_ALARM_REASON_ZH, JUDGE_SUBJECT_ZH, VERDICT_ZH
from streams.runtime import topics as T

__all__ = ["office_steps", "Office"]

OPEN_ORDER = ("issued", "reopened", "escalated")
ACTOR = "演示"  # the scripted steps' user name (the departments' own answers carry none)


@dataclass(slots=True)
class Office:
    """What every step needs: the worker to read from, a producer, the catalog, and the lines printed so far."""

    settings: Settings
    worker: Any  # riskwatch.tools.runner.WorkerProcess (query)
    catalog: Catalog
    say: Callable[[str], None] = print
    lines: list[str] = field(default_factory=list)
    timeout: float = 90.0
    seed: int = 7
    _producer: Any = None
    _n: int = 0

    # --- reads and writes -------------------------------------------------------------------------
    def q(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows from the worker's /query (``{db}`` the riskwatch database, ``%(name)s`` a parameter)."""
        sql = finalize_query(sql.replace("{db}", self.settings.clickhouse_database), params or None)
        return self.worker.query(sql) or []

    def send(self, topic: str, event: dict[str, Any], flush: bool = True) -> None:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(**self.settings.kafka_kwargs(), acks="all", linger_ms=20)
        self._producer.send(self.settings.topic(topic), key=str(event["entity_id"]).encode(), value=orjson.dumps(event))
        if flush:
            self.flush()

    def flush(self) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=60)

    def now(self) -> datetime:
        """Wall time, one second after the previous event's (steps stay in order)."""
        self._n += 1
        return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=self._n)

    def event(self, entity_id: str, **fields: Any) -> dict[str, Any]:
        """An event's envelope at wall time, one second after the previous one (steps stay in order)."""
        at = self.now()
        return {
            "schema_version": 1,
            "event_id": f"demo-office-{uuid.uuid4().hex[:16]}",
            "entity_id": entity_id,
            "occurred_at": at.isoformat(),
            "source": "demo",
            **fields,
        }

    def until(self, what: str, check: Callable[[], Any], timeout: float | None = None) -> Any:
        return wait_for(check, timeout or self.timeout, what, interval=0.5)

    def line(self, text: str) -> None:
        self.lines.append(text)
        self.say(text)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


# --- 1. 整改与复查 ------------------------------------------------------------------------------------
ORDERS_OPEN_SQL = """
SELECT order_id, entity_id, department, item_id FROM {db}.rectification_orders FINAL
WHERE status IN ('issued', 'reopened', 'escalated') ORDER BY order_id"""
ORDER_ALERT_SQL = """
SELECT order_id, entity_id, entity_name, alert_id, department FROM {db}.rectification_orders FINAL
WHERE order_id = %(o)s AND alert_id != ''"""
ORDERS_SQL = "SELECT status, count() AS n FROM {db}.rectification_orders FINAL GROUP BY status ORDER BY status"
OUTCOMES_SQL = """
SELECT verdict, count() AS n FROM {db}.events_feedback FINAL
WHERE status = 'disposed' AND verdict NOT IN ('', 'unknown') GROUP BY verdict ORDER BY verdict"""
OPEN_ALERT_SQL = """
SELECT alert_id, entity_id, lead_department, title, rule FROM {db}.alerts FINAL
WHERE status IN ('firing', 'acknowledged', 'disposing') AND has(departments, lead_department)
  AND entity_id NOT IN (SELECT entity_id FROM {db}.events_sensor WHERE source = 'demo')
  AND alert_id NOT IN (SELECT alert_id FROM {db}.events_feedback WHERE status = 'disposed')
ORDER BY rule LIKE 'model.%%' DESC, first_seen LIMIT 1"""


def _dispose(o: Office, alert: dict[str, Any], outcome: dict[str, Any], result: str) -> None:
    """The lead department's 签收 and 已处置 with ``outcome`` on its own topic (as the workbench sends them)."""
    dept = alert["lead_department"]
    for status, extra in (("acknowledged", {}), ("disposed", {"outcome": outcome, "result": result})):
        fb = o.event(alert["entity_id"], alert_id=alert["alert_id"], department=dept, status=status, user=ACTOR)
        o.send(f"events.feedback.{dept}", {**fb, "comment": f"演示:{VERDICT_ZH[outcome['verdict']]}", **extra})


def rectification(o: Office) -> dict[str, Any] | None:
    """The simulated departments on every open order of the run (:class:`FollowUpPlayer`): 整改完成, then the 复查
    whose result the ground truth decides; a failed one re-opens the order, the department claims again and the
    second 复查 passes. Returns the order shown (one that failed first, of an alert when there is one)."""
    counts = {r["verdict"]: r["n"] for r in o.q(OUTCOMES_SQL)}
    o.line(
        "处置结果 outcomes from the simulated departments: "
        + (", ".join(f"{VERDICT_ZH.get(v, v)} {n}" for v, n in counts.items()) or "none")
    )
    rows = o.q(ORDERS_OPEN_SQL)
    if not rows:  # the departments confirmed nothing with 责令整改: one open alert is confirmed here
        alerts = o.q(OPEN_ALERT_SQL)
        if not alerts:
            o.line("整改: no rectification order and no open alert to confirm")
            return None
        a = alerts[0]
        outcome = {"verdict": "confirmed", "measures": ["rectify"], "rectify_note": "限期整改并报送整改材料"}
        _dispose(o, a, outcome, "经现场核查情况属实,已责令限期整改。")
        rows = o.until("the order of the 责令整改 outcome", lambda: o.q(ORDERS_OPEN_SQL))
        o.line(f"整改: {a['alert_id']} confirmed (属实, 责令整改) by {a['lead_department']} in this step")
    player = FollowUpPlayer(seed=o.seed)
    plays = player.orders(rows)
    by_id = {p.order_id: p for p in plays}

    def statuses() -> dict[str, str]:
        got = o.q(
            "SELECT order_id, status FROM {db}.rectification_orders FINAL WHERE has(%(ids)s, order_id)", ids=list(by_id)
        )
        return {r["order_id"]: r["status"] for r in got}

    def play(
        batch: list[OrderPlay],
        what: str,
        make: Callable[[OrderPlay], tuple[str, dict[str, Any]]],
        want: tuple[str, ...],
    ) -> None:
        for p in batch:
            topic, ev = make(p)
            o.send(topic, ev, flush=False)
        o.flush()
        ids = {p.order_id for p in batch}

        def there() -> bool:
            now = {k: v for k, v in statuses().items() if k in ids}
            return len(now) == len(ids) and all(v in want for v in now.values())

        o.until(what, there)

    def claim(n: int) -> Callable[[OrderPlay], tuple[str, dict[str, Any]]]:
        return lambda p: (f"events.feedback.{p.department}", player.claim(p, n, o.now()))

    def recheck(p: OrderPlay, passed: bool) -> tuple[str, dict[str, Any]]:
        return f"events.inspection.{p.department}", player.recheck(p, passed, o.now())

    play(plays, "the orders claimed", claim(1), ("claimed",))
    play(plays, "the first 复查", lambda p: recheck(p, p.fixed_first), ("closed", "reopened", "escalated"))
    failed = [p for p in plays if not p.fixed_first]
    if failed:
        play(failed, "the second claims", claim(2), ("claimed",))
        play(failed, "the second 复查", lambda p: recheck(p, True), ("closed",))
    shown = next((p for p in failed if o.q(ORDER_ALERT_SQL, o=p.order_id)), failed[0] if failed else plays[0])
    order = o.q(ORDER_ALERT_SQL.replace("AND alert_id != ''", ""), o=shown.order_id)[0]
    oid = shown.order_id

    def closed_history() -> list[dict[str, Any]] | None:  # the order's row may be stored before its last link
        rows = o.q(
            "SELECT to_status FROM {db}.alert_history WHERE alert_id = %(o)s AND kind = 'order' ORDER BY seq", o=oid
        )
        return rows if rows and rows[-1]["to_status"] == "closed" else None

    steps = o.until(f"order {oid}'s closing link in its history", closed_history)
    o.line(
        f"整改复查 by the simulated departments: {len(plays)} orders claimed, 复查 合格 {len(plays) - len(failed)}, "
        f"不合格 {len(failed)} (re-opened, claimed again, 合格 at the second 复查)"
    )
    o.line(
        f"整改令 {oid} ({order['entity_name'] or order['entity_id']}, {o.catalog.dept_name(order['department'])}"
        + (f", alert {order['alert_id']}" if order["alert_id"] else "")
        + f"): {' → '.join(s['to_status'] for s in steps)}"
    )
    o.line("整改令 by status: " + ", ".join(f"{r['status']} {r['n']}" for r in o.q(ORDERS_SQL)))
    return order


# --- 2. 误报 -----------------------------------------------------------------------------------------
FALSE_SQL = """
SELECT f.alert_id AS alert_id, f.false_reason AS reason, a.title AS title, a.rule AS rule
FROM {db}.events_feedback AS f FINAL LEFT JOIN (SELECT alert_id, title, rule FROM {db}.alerts FINAL) AS a
  ON a.alert_id = f.alert_id
WHERE f.status = 'disposed' AND f.verdict = 'false_alarm' ORDER BY f.occurred_at"""


def false_alarms(o: Office) -> None:
    rows = o.q(FALSE_SQL)
    if not rows:  # nobody labelled one: the lead of an open alert (a model's first) labels it 误报 here
        alerts = o.q(OPEN_ALERT_SQL)
        if not alerts:
            o.line("误报: none labelled and no open alert to label")
            return
        _dispose(o, alerts[0], {"verdict": "false_alarm", "reason": "sensor_fault"}, "经现场核查系设备故障误报。")
        rows = o.until("the 误报 outcome", lambda: o.q(FALSE_SQL))
        o.line(f"误报: {alerts[0]['alert_id']} labelled by {alerts[0]['lead_department']} in this step")
    by = Counter(FALSE_ALARM_REASON_ZH.get(r["reason"], r["reason"]) for r in rows)
    ex = rows[0]
    o.line(
        f"误报 false alarms labelled: {len(rows)} ("
        + ", ".join(f"{k} {n}" for k, n in by.most_common())
        + f"); e.g. {ex['alert_id']} {ex['title']} [{ex['rule']}]: 误报原因 {FALSE_ALARM_REASON_ZH.get(ex['reason'])}"
    )


# --- 3. 预警准确率 -------------------------------------------------------------------------------------
def precision(o: Office, days: int = 3650) -> None:
    """The office's precision table by detector (every alert of the run: the simulated time may be in the past)."""
    from sinks.precision import ALERT_OUTCOMES_SQL, table

    groups = table(o.q(ALERT_OUTCOMES_SQL, days=days), "detector")
    o.line("预警准确率 precision by detector (sinks/precision.py): 预警 属实 不属实 误报 未反馈 准确率 [95% 区间]")
    for g in groups:
        p = "—" if g.precision is None else f"{g.precision:.0%} [{g.interval[0]:.0%}, {g.interval[1]:.0%}]"
        o.line(f"  {g.key:<22}{g.alerts:>6}{g.confirmed:>6}{g.not_confirmed:>6}{g.false:>6}{g.unknown:>6}  {p}")


# --- 4. 双告知 ---------------------------------------------------------------------------------------
NOTICES_SQL = """
SELECT notice_id, department, entity_id, status FROM {db}.notices FINAL
WHERE kind = 'dual_notification' AND status IN ('delivered', 'urged', 'escalated')
ORDER BY created_at, notice_id, department"""
NOTICE_COUNTS_SQL = """
SELECT status, count() AS n FROM {db}.notices FINAL WHERE kind = 'dual_notification' GROUP BY status"""


def dual_notices(o: Office) -> None:
    """The simulated departments answer the open 双告知 (:class:`FollowUpPlayer`): most 认领, a few 有异议 (they wait
    in the office's 研判), some stay silent (urged)."""
    if not o.q(NOTICES_SQL):  # no registration told anyone yet: a new entity registers (its lead departments are told)
        eid = f"DEMO-REG-{uuid.uuid4().hex[:6]}"
        o.send(
            "events.registry",
            o.event(eid, action="registered", name="舞泉镇演示新开食品店", kind="food_seller", township="舞泉镇"),
        )
        o.until("the 双告知 of a new registration", lambda: o.q(NOTICES_SQL))
    rows = o.q(NOTICES_SQL)
    player = FollowUpPlayer(seed=o.seed)
    answers = player.notices(rows)
    for r, action in answers:
        o.send(f"events.notice.{r['department']}", player.notice_answer(r, action, o.now()), flush=False)
    o.flush()
    n_confirm = sum(a == "confirm" for _, a in answers)
    n_dispute = len(answers) - n_confirm

    def answered() -> dict[str, int] | None:
        got = {r["status"]: r["n"] for r in o.q(NOTICE_COUNTS_SQL)}
        return got if got.get("confirmed", 0) >= n_confirm and got.get("disputed", 0) >= n_dispute else None

    got = o.until("the notices answered", answered)
    ex = next((r for r, a in answers if a == "confirm"), None)
    o.line(
        f"双告知 notices answered by the simulated departments: {len(rows)} open, 认领 {n_confirm}, "
        f"有异议 {n_dispute}, silent {len(rows) - len(answers)}; now "
        + ", ".join(f"{k} {n}" for k, n in sorted(got.items()))
        + (f"; e.g. {ex['notice_id']} 认领 by {o.catalog.dept_name(ex['department'])}" if ex else "")
    )


# --- 5. 议事会商, 6. 研判 -------------------------------------------------------------------------------
def _web_ctx(o: Office) -> Any:
    """The workbench's pieces the office functions need: settings, catalog, its reader and producer."""
    from web.data import Reader
    from web.produce import Producer

    return SimpleNamespace(
        settings=o.settings, catalog=o.catalog, reader=Reader(o.settings), producer=Producer(o.settings, o.catalog)
    )


async def _consult(o: Office, c: Any, order: dict[str, Any] | None) -> tuple[str, str, bool]:
    """Convene and conclude one consultation as ``web/routes/consult.py`` does (no HTTP): its id, the task's id,
    and whether Alertmanager took the invitations."""
    from schemas.events import LOCAL_TZ, InspectionTask
    from streams.engine import office as O
    from web.routes.consult import notify
    from web.routes.judge import _build, publish

    office = o.catalog.taskforce_office
    actor = f"{office}/{ACTOR}"
    now = datetime.now(LOCAL_TZ)
    alert = order["alert_id"] if order and order["alert_id"] else ""
    dept = order["department"] if order else o.catalog.items_list[0].lead
    entity = order["entity_id"] if order else ""
    coop = [d for d in ("emergency", "health") if d in o.catalog.departments and d != dept][:1]
    rec = O.Consultation(
        consultation_id=f"C-{now:%Y%m%d}-{uuid.uuid4().hex[:6]}",
        version=O.now_ms(),
        title="整改复查不合格问题会商",
        theme="" if alert else "整改复查不合格的跨部门处置",
        alert_ids=[alert] if alert else [],
        entity_ids=[entity] if entity else [],
        departments=[dept, *coop],
        agenda="一、通报整改复查情况;二、明确后续监管措施和责任部门。",
        held_at=now + timedelta(hours=1),
        actor=actor,
        at=now,
    )
    rec = await publish(c, rec)
    notified = await notify(c, rec)
    d = O.Decision(
        text="对该主体开展联合回访检查",
        department=dept,
        due=now + timedelta(days=7),
        task_id=f"{rec.consultation_id}-D1",
    )
    task = _build(
        c,
        InspectionTask,
        entity_id=entity or f"{office}-demo",
        task_id=d.task_id,
        department=dept,
        due=d.due,
        kind="plan",
        ref=rec.consultation_id,
        note=f"议事会商决定:{d.text}"[:500],
    )
    await c.producer.send(task, actor, dept=office)
    done = rec.model_copy(
        update={
            "version": O.now_ms(),
            "status": "concluded",
            "minutes": "与会部门通报了整改复查情况,同意开展联合回访检查。",
            "decisions": [d],
            "actor": actor,
            "at": datetime.now(LOCAL_TZ),
        }
    )
    await publish(c, done)
    return rec.consultation_id, d.task_id, notified


def consultation(o: Office, done: tuple[str, str, bool]) -> None:
    cid, tid, notified = done
    rows = o.until(
        f"consultation {cid} concluded and its decision's task",
        lambda: o.q(
            "SELECT t.department AS department, t.due AS due, c.status AS status FROM {db}.events_task AS t FINAL "
            "JOIN (SELECT consultation_id, argMax(status, seq) AS status FROM {db}.consultations FINAL "
            "GROUP BY consultation_id) AS c ON c.consultation_id = t.ref "
            "WHERE t.ref = %(c)s AND t.task_id = %(t)s AND c.status = 'concluded'",
            c=cid,
            t=tid,
        ),
    )
    r = rows[0]
    o.line(
        f"议事会商 {cid}: concluded, decision → task {tid} of {o.catalog.dept_name(r['department'])} due "
        f"{str(r['due'])[:10]}; invitations through Alertmanager: {'sent' if notified else 'not taken (phone them)'}"
    )


def judge_queue(o: Office, q: dict[str, Any]) -> dict[str, int]:
    sizes = {
        JUDGE_SUBJECT_ZH["complaint"]: len(q["unmatched"]),
        JUDGE_SUBJECT_ZH["entity"]: len(q["entities"]),
        JUDGE_SUBJECT_ZH["alert"]: len(q["low"]),
        JUDGE_SUBJECT_ZH["dispute"]: len(q["disputes"]),
        JUDGE_SUBJECT_ZH["notice"]: len(q["notices"]),
    }
    o.line(f"研判 queue: {sum(sizes.values())} (" + ", ".join(f"{k} {n}" for k, n in sizes.items()) + ")")
    return sizes


# --- 7. 联合信用监管 ----------------------------------------------------------------------------------
TIER_MIX = (("A", 0.30), ("B", 0.40), ("C", 0.20), ("D", 0.10))  # the demo's official tiers (an assumption)


def _uscc(n: int) -> str:
    """A valid 统一社会信用代码 (check digit computed) for the demo's n-th entity: 91 4111 21 + 9 + check."""
    from stdnum.cn import uscc

    body = f"9141112{n:010d}"[:17]
    return body + uscc.calc_check_digit(body)


def _tier(entity_id: str) -> str:
    import hashlib

    u = int(hashlib.blake2b(entity_id.encode(), digest_size=4).hexdigest(), 16) / 2**32
    acc = 0.0
    for t, share in TIER_MIX:
        acc += share
        if u < acc:
            return t
    return TIER_MIX[-1][0]


def write_credit_xlsx(rows: list[dict[str, Any]], path: Path) -> Path:
    """The county's 信用风险分类结果 export (official headers) for ``rows`` (entity_id, name)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.worksheets[0]
    ws.append(["统一社会信用代码", "主体名称", "分类等级", "认定日期", "认定机关"])
    for n, r in enumerate(rows, 1):
        ws.append([_uscc(n), r["name"], _tier(r["entity_id"]), "2026-11-30", "舞阳县市场监督管理局"])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def credit(o: Office, month: str | None = None, seed: int = 7, out_dir: Path = Path("var/demo")) -> None:
    """Import an official tier export and show how the next 双随机 draw changes, per tier against the data."""
    try:
        from riskwatch.domain.planning import LIVE_ENTITIES_SQL, live_entities, load_spot_checks, tier_rates
    except ImportError:
        o.line("信用: the credit import and the live-registry draw are not in this checkout (branch credit)")
        return
    planner = load_spot_checks(catalog=o.catalog)
    month = month or time.strftime("%Y-%m")

    def draw() -> tuple[list[Any], int]:
        ents, untiered = live_entities(o.q(LIVE_ENTITIES_SQL), planner)
        return tier_rates(planner, ents, planner.draw(ents, month, seed)), untiered

    before, untiered0 = draw()
    reg = o.q("SELECT entity_id, name FROM {db}.registry FINAL WHERE status = 'active' ORDER BY entity_id")
    path = write_credit_xlsx(reg, out_dir / "信用风险分类结果.xlsx")
    n0 = (o.q("SELECT count() AS n FROM {db}.credit FINAL WHERE kind = 'tier'") or [{"n": 0}])[0]["n"]
    env = {**__import__("os").environ, **settings_env(o.settings)}
    run = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "import", "credit", str(path), "--report-dir", str(out_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0:
        o.line(f"信用: import failed (exit {run.returncode}): {(run.stderr or run.stdout)[-300:]}")
        return
    try:
        o.until(
            "the imported credit tiers in ClickHouse",
            lambda: o.q("SELECT count() AS n FROM {db}.credit FINAL WHERE kind = 'tier'")[0]["n"] > n0,
        )
        wait_for(
            lambda: consumer_lag(o.settings, [o.settings.topic(t) for t in T.INPUT_TOPICS]) == 0,
            o.timeout,
            "the worker to store the credit records",
            interval=0.5,
        )
    except WaitTimeout:
        o.line("信用: the imported records did not reach ClickHouse in time")
        return
    after, untiered1 = draw()
    stored = o.q("SELECT tier, count() AS n FROM {db}.credit FINAL WHERE kind = 'tier' GROUP BY tier ORDER BY tier")
    o.line(
        f"信用 credit: {path} ({len(reg)} rows) imported with `riskwatch import credit`: "
        + ", ".join(f"{r['tier']} {r['n']}" for r in stored)
    )
    drawn0 = {t.tier: t for t in before}
    o.line(
        f"双随机 draw {month} over the live registry, per tier (before the import {untiered0} entities untiered → "
        f"{planner.config.untiered}; after {untiered1}): 等级 总数 抽取 数据比例 实际 | before 总数 抽取"
    )
    for t in after:
        b = drawn0.get(t.tier)
        o.line(
            f"  {t.tier}  {t.population:>6}{t.drawn:>6}{t.rate:>7.0%}{t.achieved:>8.1%}"
            f"  | {b.population if b else 0:>6}{b.drawn if b else 0:>6}"
        )
    o.line(
        f"  (总数 = entity × item pairs; method {planner.config.method}: each item × tier stratum draws "
        "ceil(rate × n), so small strata come out above the data's rate)"
    )


# --- the demo's call -----------------------------------------------------------------------------------
def office_steps(settings: Settings, worker: Any, console: Any, catalog: Catalog) -> list[str]:
    """Run every step after the simulated departments stopped; each failing step says so and the rest go on."""
    o = Office(settings, worker, catalog, say=lambda s: console.print(s, markup=False, highlight=False))
    t0 = time.monotonic()
    console.rule("整改复查 · 误报 · 准确率 · 双告知 · 研判 · 会商 · 信用")
    try:
        try:
            wait_for(
                lambda: consumer_lag(settings, [settings.topic(t) for t in T.INPUT_TOPICS]) == 0,
                300,
                "the worker to catch up before the office's steps",
                interval=1.0,
            )
        except WaitTimeout as e:  # the steps wait for their own results; they may still work
            o.line(f"(the worker had not caught up: {e})")
        order = _step(o, "整改", rectification)
        _step(o, "误报", false_alarms)
        _step(o, "准确率", precision)
        _step(o, "双告知", dual_notices)
        done, q = asyncio.run(_office(o, order))  # one event loop: the workbench's reader and producer
        if isinstance(done, tuple):
            _step(o, "会商", lambda o: consultation(o, done))
        else:
            o.line(f"会商: did not complete ({done})")
        if isinstance(q, dict):
            _step(o, "研判", lambda o: judge_queue(o, q))
        else:
            o.line(f"研判: did not complete ({q})")
        _step(o, "信用", credit)
    finally:
        o.close()
    o.line(f"(office steps: {time.monotonic() - t0:.1f}s)")
    return o.lines


async def _office(o: Office, order: dict[str, Any] | None) -> tuple[Any, Any]:
    """The office's records and its queue, with the workbench's reader and producer: (consultation, queue), each
    the result or what went wrong."""
    from web.routes.judge import load_judging, queue

    c = _web_ctx(o)
    try:
        try:
            done: Any = await _consult(o, c, order)
        except Exception as e:  # noqa: BLE001 — the demo goes on and says what failed
            done = f"{type(e).__name__}: {str(e)[:200]}"
        try:
            q: Any = await queue(c, load_judging())
        except Exception as e:  # noqa: BLE001
            q = f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        await c.reader.close()
        await c.producer.close()
    return done, q


def _step(o: Office, name: str, fn: Callable[[Office], Any]) -> Any:
    try:
        return fn(o)
    except Exception as e:  # noqa: BLE001 — the demo goes on and says what failed
        o.line(f"{name}: did not complete ({type(e).__name__}: {str(e)[:200]})")
        return None

"""一企一档: an entity's registry data, items, its official credit tier (官方信用等级) beside riskwatch's
own risk tier (系统风险评估), its credit listings with their 联合惩戒 measures and repair history
(riskwatch/domain/credit.py), risk score over time, alerts, inspections, rectification orders (整改令 and
their 复查), complaints (masked), spot checks and its devices (设备台账: channels, unit, ratings, reporting
interval, calibration date, last reading)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from riskwatch.domain.credit import ENTITY_SQL as CREDIT_SQL
from riskwatch.domain.credit import CreditRow, CreditStatus, load_credit
from schemas.privacy import mask_pii
from schemas.vocabulary import FALSE_ALARM_REASON_ZH, MEASURE_ZH, VERDICT_ZH
from sinks.precision import OUTCOMES_OF_ENTITY_SQL
from web.data import ts
from web.deps import PageError, ctx, render, require_user
from web.orders import orders_of
from web.routes.alert import ID
from web.routes.inbox import nav_counts
from web.svg import line_chart
from web.texts import SENSOR_CHANNEL_ZH
from web.users import User

router = APIRouter()


@router.get("/entities/{entity_id}")
async def dossier(request: Request, entity_id: str, user: User = Depends(require_user)):
    c = ctx(request)
    if not ID.match(entity_id):
        raise PageError(404, "主体不存在", "主体编号无效。")
    r = c.reader
    reg = await r.one("SELECT * FROM {db}.registry FINAL WHERE entity_id = %(e)s", e=entity_id)
    alerts = await r.rows(
        """SELECT alert_id, title, level, level_zh, status, item_name, first_seen, departments
        FROM {db}.alerts FINAL WHERE entity_id = %(e)s ORDER BY first_seen DESC LIMIT 100""",
        e=entity_id,
    )
    if reg is None and not alerts:
        raise PageError(404, "主体不存在", f"名录库中没有主体 {entity_id}。")
    if not user.sees_all:
        in_scope = reg is not None and any(
            reg["kind"] in it.objects and (user.dept == it.lead or user.dept in it.cooperating)
            for it in c.catalog.items.values()
        )
        if not (in_scope or any(user.dept in a["departments"] for a in alerts)):
            raise PageError(403, "无权查看", "该主体不在本部门的监管范围内,也没有发送给本部门的预警。")
        alerts = [a for a in alerts if user.dept in a["departments"]]
    cr = c.credit
    scores = await r.rows(
        """SELECT toStartOfHour(at) AS t, max(score) AS score FROM {db}.risk_scores
        WHERE entity_id = %(e)s AND at > now() - INTERVAL 180 DAY GROUP BY t ORDER BY t LIMIT 5000""",
        e=entity_id,
    )
    peak = await r.one(
        """SELECT max(score * pow(0.5, dateDiff('second', at, now()) / 86400 / %(h)s)) AS p
        FROM {db}.risk_scores WHERE entity_id = %(e)s""",
        e=entity_id,
        h=cr.half_life_days,
    )
    p = float(peak["p"] or 0) if peak else 0.0
    tier = max((t for t, lo in cr.tiers.items() if p >= lo), key=lambda t: cr.tiers[t], default="A")
    inspections = await r.rows(
        """SELECT occurred_at, inspection_id, item_id, departments, outcome, worst_severity,
        violation_codes, violation_severities, violation_descriptions FROM {db}.events_inspection FINAL
        WHERE entity_id = %(e)s ORDER BY occurred_at DESC LIMIT 50""",
        e=entity_id,
    )
    complaints = await r.rows(
        """SELECT occurred_at, channel, category, text FROM {db}.events_complaint FINAL
        WHERE entity_id = %(e)s ORDER BY occurred_at DESC LIMIT 50""",
        e=entity_id,
    )
    for x in complaints:
        x["text"] = mask_pii(x["text"])
    spot = await r.rows(
        """SELECT occurred_at, task_id, department, due, item_id, ref FROM {db}.events_task FINAL
        WHERE entity_id = %(e)s AND kind = 'spot_check' ORDER BY due DESC LIMIT 50""",
        e=entity_id,
    )
    devices = await r.rows(
        """SELECT device_id, channels, unit, rated_pressure_mpa, rated_temp_c, rated_load_kg, set_point_min_c,
        set_point_max_c, medium, interval_s, channel_intervals_s, installed_on, calibrated_on, owner
        FROM {db}.devices FINAL WHERE entity_id = %(e)s AND action != 'removed' ORDER BY device_id LIMIT 200""",
        e=entity_id,
    )
    if devices:
        seen = await r.rows(
            """SELECT device_id, max(occurred_at) AS last FROM {db}.events_sensor
            WHERE entity_id = %(e)s GROUP BY device_id""",
            e=entity_id,
        )
        last = {x["device_id"]: x["last"] for x in seen}
        for d in devices:
            d["last_seen"] = last.get(d["device_id"])
            d["channels_zh"] = "、".join(SENSOR_CHANNEL_ZH.get(ch, ch) for ch in d["channels"])
            own = d.get("channel_intervals_s") or {}
            d["intervals_zh"] = (
                ";".join(f"{SENSOR_CHANNEL_ZH.get(ch, ch)} {v} 秒" for ch, v in sorted(own.items()))
                if own
                else f"{d['interval_s']} 秒"
            )
    chart = (
        line_chart(
            {"风险分": [(ts(x["t"]), float(x["score"])) for x in scores]},
            y_label="风险分",
            width=1100,
            height=240,
            bands=[(85, 100, "#c0392b"), (70, 85, "#e67e22")],
            y_range=(0, 100),
            step=True,
        )
        if scores
        else None
    )
    outcomes: dict[str, dict] = {}  # alert_id → its latest outcome (rows are latest first)
    for o in await r.rows(OUTCOMES_OF_ENTITY_SQL, entity_id=entity_id):
        outcomes.setdefault(o["alert_id"], o)
    items = [it for it in c.catalog.items.values() if reg and reg["kind"] in it.objects]
    orders = await orders_of(request, "entity_id = %(e)s", e=entity_id)  # 整改令, open ones first
    credit = CreditStatus.of(CreditRow.from_row(x) for x in await r.rows(CREDIT_SQL, e=entity_id))
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "dossier.html",
        e=reg,
        consultations=await __import__("web.routes.consult", fromlist=["of_entity"]).of_entity(c, entity_id),
        entity_id=entity_id,
        alerts=alerts,
        outcomes=outcomes,
        VERDICT_ZH=VERDICT_ZH,
        MEASURE_ZH=MEASURE_ZH,
        REASON_ZH=FALSE_ALARM_REASON_ZH,
        chart=chart,
        tier=tier,
        peak=p,
        inspections=inspections,
        complaints=complaints,
        spot=spot,
        orders=orders,
        items=items,
        devices=devices,
        credit=credit,
        credit_cfg=load_credit(),
        kind_name=c.catalog.entity_kinds[reg["kind"]].name if reg and reg["kind"] in c.catalog.entity_kinds else "",
    )

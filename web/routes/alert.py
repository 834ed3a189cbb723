"""预警详情 and the four actions (签收 / 处置中 / 已处置 / 非本部门), each one ``events.feedback``;
for a case transfer's receiver (案件移送, e.g. 县公安局) also 受理 / 不予受理 (``status=accepted`` /
``declined`` with the reason), and the evidence bundle (hash, ``riskwatch evidence export``).

After an action the page waits for the worker: it shows "已提交,等待处理引擎确认" (refreshing
itself every 2 s, no script) until the alert revision caused by the feedback event is in
ClickHouse, or says why the worker refused it (the dead letter's reason). ``?wait=<event>`` looks
only at events this user submitted on this alert (``web/records.py``); any other id is ignored.

Uploads: login (the cookie), the CSRF token (in the upload form's action URL) and the alert's
access are checked before any of the body is parsed; the body limit (``web/limits.py``) stops
the parser at the limit. An attachment is served to whoever may see an alert it was uploaded to.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from detectors.rules import RuleSet, UsedLimit
from riskwatch.domain.outcomes import load_reasons
from schemas.events import DisposalFeedback, DisposalOutcome
from schemas.privacy import mask_pii
from schemas.vocabulary import (
    FALSE_ALARM_REASON_ZH,
    MEASURE_ZH,
    SENSOR_CHANNEL_ZH,
    SENSOR_UNIT_ZH,
    VERDICT_ZH,
    AlertStatus,
    TransferState,
    zh,
)
from sinks.precision import OUTCOMES_OF_ALERT_SQL
from streams.engine.identity import sender_topic
from web.credit import alert_reminders
from web.data import ts, when
from web.deps import CSRF_REFUSED, OPEN, PageError, check_csrf, csrf_ok, ctx, render, require_user
from web.orders import load_order, orders_of
from web.routes.inbox import nav_counts
from web.svg import line_chart
from web.texts import describe, signal_zh
from web.users import User

router = APIRouter()
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
SHA = re.compile(r"^[0-9a-f]{64}$")
STALLED_SECONDS = 60  # the worker has not confirmed an action this long: stop refreshing, say so
ACTIONS = ("acknowledged", "in_progress", "disposed", "not_ours")
# attachment types: extension → (leading bytes, media type)
ALLOWED = {
    ".pdf": (b"%PDF-", "application/pdf"),
    ".png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    ".jpg": (b"\xff\xd8\xff", "image/jpeg"),
    ".jpeg": (b"\xff\xd8\xff", "image/jpeg"),
}

ALERT_SQL = """
SELECT alert_id, revision, entity_id, entity_name, entity_kind, township, item_id, item_name, rule, level, level_zh,
       status, score, title, message, explanation_signals, explanation_values, explanation_details, lead_department,
       departments, first_seen, last_seen, updated_at, ack_due, dispose_due, flapping, evidence_hash, transfer
FROM {db}.alerts FINAL WHERE alert_id = %(a)s"""

# the departments an alert's notifications of one kind went to: case_transfer (案件移送: they may
# read and answer it) and released (专班改派: they may read it). From the audit trail's ``notify``
# rows ("<kind> → <dept>,<dept>"): ``alerts`` keeps only an alert's latest revision once merged.
NOTIFIED_SQL = """
SELECT groupUniqArrayArray(splitByChar(',', splitByString(' → ', comment)[2])) AS depts
FROM {db}.alert_history WHERE alert_id = %(a)s AND kind = 'notify' AND startsWith(comment, %(prefix)s)"""

BUNDLES_SQL = """
SELECT version, bundle_hash, final, sealed_at FROM {db}.evidence FINAL WHERE alert_id = %(a)s ORDER BY version"""

HISTORY_SQL = """
SELECT seq, at, kind, from_status, to_status, actor, comment
FROM {db}.alert_history FINAL WHERE alert_id = %(a)s ORDER BY at, seq LIMIT 500"""

WAIT_SQL = """
SELECT (SELECT count() FROM {db}.alerts WHERE alert_id = %(a)s AND source_event_id = %(e)s) AS revised,
       (SELECT count() FROM {db}.alert_history
        WHERE alert_id = %(a)s AND kind IN ('feedback', 'transfer') AND actor = %(actor)s
        AND at >= fromUnixTimestamp64Milli(%(since)s) - INTERVAL 1 SECOND) AS recorded,
       (SELECT any(error) FROM {db}.dead_letters
        WHERE topic = %(topic)s AND position(base64Decode(payload), %(e)s) > 0) AS refused"""


async def load_alert(request: Request, user: User, alert_id: str) -> dict:
    if not ID.match(alert_id):
        raise PageError(404, "预警不存在", f"没有编号为 {alert_id[:80]} 的预警。请从收件箱进入。")
    a = await ctx(request).reader.one(ALERT_SQL, a=alert_id)
    if a is None:
        raise PageError(404, "预警不存在", f"没有编号为 {alert_id} 的预警。请从收件箱进入。")
    a["transfer_to"] = []
    if a["transfer"]:
        row = await ctx(request).reader.one(NOTIFIED_SQL, a=alert_id, prefix="case_transfer → ")
        a["transfer_to"] = list(row["depts"]) if row else []
    a["released"] = False
    if not user.sees_all and user.dept not in a["departments"] and user.dept not in a["transfer_to"]:
        row = await ctx(request).reader.one(NOTIFIED_SQL, a=alert_id, prefix="released → ")
        if not (row and user.dept in row["depts"]):
            raise PageError(403, "无权查看", "该预警未发送给本部门,无权查看或反馈。如认为有误,请联系专班办公室。")
        a["released"] = True
    return a


def feedback_states(alert: dict, history: list[dict]) -> list[dict]:
    """Each receiving department with its last feedback (from alert_history kind='feedback'), then
    the departments the task-force office released (``receivers`` rows ``-dept``) as 已改派他部门."""
    last: dict[str, dict] = {}
    released: dict[str, dict] = {}
    for h in history:
        if h["kind"] == "feedback":
            dept = h["actor"].split("/", 1)[0]
            last[dept] = {"status": h["comment"].split("(", 1)[0], "actor": h["actor"], "at": h["at"]}
        elif h["kind"] == "receivers":
            for tok in (h["comment"] or "").split(" "):
                if tok.startswith("-"):
                    for d in tok[1:].split(","):
                        released[d] = {"status": "released", "actor": h["actor"], "at": h["at"]}
    rows = [
        {"dept": d, "lead": d == alert["lead_department"], **last.get(d, {"status": "", "actor": "", "at": None})}
        for d in alert["departments"]
    ]
    rows += [{"dept": d, "lead": False, **x} for d, x in released.items() if d not in alert["departments"]]
    return rows


def transfer_info(a: dict, history: list[dict]) -> dict | None:
    """The case transfer (案件移送) of an alert from its ``transfer`` history rows: when, to whom,
    the reasons and the evidence bundle hash sent with it, and the receiver's answer."""
    rows = [h for h in history if h["kind"] == "transfer"]
    if not a["transfer"] and not rows:
        return None
    sent = next((h for h in rows if h["to_status"] == "transferred"), None)
    reasons, sha = "", ""
    if sent is not None:
        m = re.match(r"^案件移送 → [\w,]+:(.*?)(?:;证据包 sha256:([0-9a-f]*))?$", sent["comment"] or "", re.S)
        if m:
            reasons, sha = m[1], m[2] or ""
    answer = next((h for h in reversed(rows) if h["to_status"] in ("accepted", "declined")), None)
    reason = ""
    if answer is not None and answer["to_status"] == "declined":
        reason = (answer["comment"] or "").removeprefix("不予受理:")
    elif answer is not None:
        reason = (answer["comment"] or "").removeprefix("受理").strip()
    return {
        "state": a["transfer"] or "transferred",
        "state_zh": zh(TransferState, a["transfer"] or "transferred"),
        "to": a["transfer_to"],
        "at": sent["at"] if sent else None,
        "reasons": reasons,
        "sha": sha,
        "answer": answer,
        "reason": reason,
        "due": None,
    }


EXPLAIN_SQL = """
SELECT explanation_signals, explanation_values, explanation_details FROM {db}.alerts
WHERE alert_id = %(a)s AND notEmpty(explanation_signals) ORDER BY revision DESC LIMIT 1"""


async def explanation(request: Request, a: dict) -> list[dict]:
    """The top contributing signals: of the latest revision that carries them (a feedback or a
    deadline revision carries none), else the rule that fired with its score."""
    sig, val, det = a["explanation_signals"], a["explanation_values"], a["explanation_details"]
    if not sig:
        row = await ctx(request).reader.one(EXPLAIN_SQL, a=a["alert_id"])
        if row:
            sig, val, det = row["explanation_signals"], row["explanation_values"], row["explanation_details"]
    out = [
        {"signal": s, "name": signal_zh(s), "value": v, "detail": re.sub(r"(读数 -?[\d.]+)C\b", r"\1℃", d)}
        for s, v, d in zip(sig, val, det, strict=False)  # stored arrays, shown as far as they go
    ]
    if not out:
        out = [
            {
                "signal": a["rule"],
                "name": signal_zh(a["rule"]),
                "value": a["score"],
                "detail": f"触发规则:{a['title']}(风险分 {a['score']:.0f})",
            }
        ]
    return out


# a device-health alert (device.offline/stuck/range/step.<channel>) and a process alert on the same
# entity at overlapping times are linked (issue 21): a dead or stuck sensor puts the other's readings in doubt
RELATED_SQL = """
SELECT alert_id, rule, level, level_zh, status, title, first_seen, last_seen, departments
FROM {db}.alerts FINAL
WHERE entity_id = %(e)s AND alert_id != %(a)s AND startsWith(rule, 'device.') != %(dev)s
  AND first_seen <= fromUnixTimestamp64Milli(%(hi)s) AND last_seen >= fromUnixTimestamp64Milli(%(lo)s)
ORDER BY first_seen DESC LIMIT 20"""
RELATED_WINDOW = timedelta(hours=24)


async def related(request: Request, user: User, a: dict) -> list[dict]:
    """同一主体的相关预警: for a device-health alert the entity's other alerts in the same period, for any
    other alert the entity's device-health alerts — only those this user may open."""
    dev = a["rule"].startswith("device.")
    first = when(a["first_seen"])
    last = ts(a["last_seen"]) or first
    lo, hi = first - RELATED_WINDOW, max(last, first) + RELATED_WINDOW
    rows = await ctx(request).reader.rows(
        RELATED_SQL,
        e=a["entity_id"],
        a=a["alert_id"],
        dev=int(dev),
        lo=int(lo.timestamp() * 1000),
        hi=int(hi.timestamp() * 1000),
    )
    out = []
    for r in rows:
        if user.sees_all or user.dept in r["departments"]:
            r["device"] = r["rule"].startswith("device.")
            out.append(r)
    return out


def used_limit(rules: RuleSet | None, a: dict, explanation: Sequence[dict]) -> tuple[str, UsedLimit] | None:
    """(channel, limit) when a sensor rule judged the alert's reading against a rated limit (the device's
    rating, its operating band's or the county default): read back from the rule's contribution, the
    explanation stored with the alert. The chart draws that limit instead of the rule's absolute one."""
    if rules is None or not a["rule"].startswith("rule.sensor."):
        return None
    channel = a["rule"].removeprefix("rule.sensor.")
    for c in explanation:
        if c["signal"] == f"sensor.{channel}":
            limit = rules.limit_used(channel, c["detail"])
            if limit is not None:
                return channel, limit
    return None


def chart_limits(
    rules: RuleSet | None, channel: str, unit: str, used: tuple[str, UsedLimit] | None
) -> dict[float, str]:
    """The dashed lines of one channel: the rated limit actually used for the alert's channel, else the
    rule's absolute 上限/下限 (a lower limit applies beside a rated one)."""
    rule = rules.sensor.get(channel) if rules is not None else None
    out: dict[float, str] = {}
    if used is not None and used[0] == channel:
        out[used[1].value] = used[1].label
    elif rule is not None and rule.max is not None:
        out[rule.max] = f"上限 {rule.max:g}{unit}"
    if rule is not None and rule.min is not None:
        out[rule.min] = f"下限 {rule.min:g}{unit}"
    return out


async def evidence(request: Request, a: dict, explanation: Sequence[dict] = ()) -> dict:
    r = ctx(request).reader
    first = when(a["first_seen"])
    last = ts(a["last_seen"]) or first
    lo, hi = first - timedelta(hours=6), max(last, first) + timedelta(hours=2)
    p = {"e": a["entity_id"], "lo": int(lo.timestamp() * 1000), "hi": int(hi.timestamp() * 1000)}
    readings = await r.rows(
        """SELECT channel, unit, occurred_at, value FROM {db}.events_sensor
        WHERE entity_id = %(e)s
          AND occurred_at BETWEEN fromUnixTimestamp64Milli(%(lo)s) AND fromUnixTimestamp64Milli(%(hi)s)
        ORDER BY occurred_at LIMIT 2000""",
        **p,
    )
    series: dict[str, list] = {}
    limits: dict[float, str] = {}
    rules = ctx(request).rules
    used = used_limit(rules, a, explanation)
    for x in readings:
        unit = SENSOR_UNIT_ZH.get(x["unit"], x["unit"])
        series.setdefault(f"{SENSOR_CHANNEL_ZH.get(x['channel'], x['channel'])}({unit})", []).append(
            (ts(x["occurred_at"]), float(x["value"]))
        )
        limits.update(chart_limits(rules, x["channel"], unit, used))
    videos = await r.rows(
        """SELECT occurred_at, camera_id, cls, confidence, evidence_ref FROM {db}.events_video
        WHERE entity_id = %(e)s
          AND occurred_at BETWEEN fromUnixTimestamp64Milli(%(lo)s) - INTERVAL 1 DAY AND fromUnixTimestamp64Milli(%(hi)s)
        ORDER BY occurred_at DESC LIMIT 20""",
        **p,
    )
    complaints = await r.rows(
        """SELECT occurred_at, channel, category, text FROM {db}.events_complaint
        WHERE entity_id = %(e)s
          AND occurred_at BETWEEN fromUnixTimestamp64Milli(%(lo)s) - INTERVAL 7 DAY AND fromUnixTimestamp64Milli(%(hi)s)
        ORDER BY occurred_at DESC LIMIT 20""",
        **p,
    )
    for c in complaints:
        c["text"] = mask_pii(c["text"])  # stored masked; masked again in case of older rows
    return {
        "chart": line_chart(series, marker=first, y_label="触发前后的传感器读数", limits=limits) if series else None,
        "videos": videos,
        "complaints": complaints,
    }


@router.get("/alerts/{alert_id}")
async def alert_page(
    request: Request, alert_id: str, user: User = Depends(require_user), wait: str = "", since: int = 0
):
    c = ctx(request)
    a = await load_alert(request, user, alert_id)  # 404/403 before anything else
    waiting = refused = None
    submitted = c.records.submission(user.username, alert_id, wait) if wait and ID.match(wait) else None
    if submitted is not None:  # only this user's own event: never another department's dead letters
        since = int(submitted * 1000)
        w = await c.reader.one(
            WAIT_SQL,
            a=alert_id,
            e=wait,
            actor=user.actor,
            since=since,
            topic=c.settings.topic(sender_topic(DisposalFeedback.topic, user.dept)),
        )
        if w and w.get("refused"):
            refused = w["refused"]
        elif not (w and w["revised"] and w["recorded"]):
            waiting = wait
        else:  # processed: read the alert again, it may have changed since the read above
            a = await load_alert(request, user, alert_id)
    history = await c.reader.rows(HISTORY_SQL, a=alert_id)
    for h in history:
        h["zh"] = describe(h, c.catalog)
    request.state.nav_counts = await nav_counts(request, user)
    can_act = user.can_act and user.dept in a["departments"] and a["status"] in OPEN
    can_reassign = user.role == "taskforce" and a["status"] in OPEN
    can_answer_transfer = user.can_act and user.dept in a["transfer_to"] and a["transfer"] == "transferred"
    bundles = await c.reader.rows(BUNDLES_SQL, a=alert_id)
    orders = await orders_of(request, "alert_id = %(a)s", a=alert_id)  # 整改令 its outcome ordered
    outcomes = await c.reader.rows(OUTCOMES_OF_ALERT_SQL, alert_id=alert_id)
    transfer = transfer_info(a, history)
    expl = await explanation(request, a)
    if transfer and transfer["at"] and transfer["state"] == "transferred" and c.transfer is not None:
        transfer["due"] = when(transfer["at"]) + timedelta(hours=c.transfer.accept_hours)
    return render(
        request,
        "alert.html",
        a=a,
        consultations=await __import__("web.routes.consult", fromlist=["of_alert"]).of_alert(c, alert_id),
        history=history,
        states=feedback_states(a, history),
        transfer=transfer,
        can_answer_transfer=can_answer_transfer,
        bundles=bundles,
        orders=orders,
        outcomes=outcomes,
        VERDICT_ZH=VERDICT_ZH,
        MEASURE_ZH=MEASURE_ZH,
        REASON_ZH=FALSE_ALARM_REASON_ZH,
        reasons=list(load_reasons()),
        can_reassign=can_reassign,
        departments=c.catalog.departments,
        explanation=expl,
        related=await related(request, user, a),
        ev=await evidence(request, a, expl),
        waiting=waiting,
        refused=refused,
        can_act=can_act,
        since=since,
        max_upload=c.settings.workbench_max_upload_bytes,
        stalled=bool(waiting) and time.time() - since / 1000 > STALLED_SECONDS,
        credit=await alert_reminders(c.reader, a["entity_id"], a["departments"], c.catalog),
    )


def store_attachment(request: Request, up: UploadFile) -> str:
    """Content-addressed: ``<workbench_dir>/attachments/<sha[:2]>/<sha><ext>``; returns the SHA-256."""
    s = ctx(request).settings
    ext = Path(up.filename or "").suffix.lower()
    if ext not in ALLOWED:
        raise PageError(400, "文件类型不允许", f"只接受 {', '.join(sorted(ALLOWED))} 格式的附件,本次操作未提交。")
    data = up.file.read(s.workbench_max_upload_bytes + 1)
    if len(data) > s.workbench_max_upload_bytes:
        raise PageError(
            413, "附件过大", f"附件不能超过 {s.workbench_max_upload_bytes // (1024 * 1024)} MB,本次操作未提交。"
        )
    magic, _ = ALLOWED[ext]
    if not data.startswith(magic):
        raise PageError(400, "文件类型不允许", f"文件内容不是 {ext} 格式,本次操作未提交。")
    sha = hashlib.sha256(data).hexdigest()
    d = Path(s.workbench_dir) / "attachments" / sha[:2]
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{sha}{ext}"
    if not target.exists():
        tmp = d / f".{sha}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return sha


@router.post("/alerts/{alert_id}/feedback")
async def feedback(request: Request, alert_id: str, user: User = Depends(require_user)):
    """No body parameters: FastAPI would parse the body (files to disk) before any dependency. The
    checks run first; the form is parsed only for a receiving department with a valid token."""
    c = ctx(request)
    upload = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
    if upload:  # the upload form carries its CSRF token in the action URL: checked before reading the body
        if not csrf_ok(request, request.query_params.get("csrf_token")):
            raise PageError(403, *CSRF_REFUSED)
    else:
        await check_csrf(request)  # a small form (64 KiB at most, web/limits.py)
    if not user.can_act:
        raise PageError(403, "只读账号", "县领导账号只能查看,不能反馈。")
    a = await load_alert(request, user, alert_id)
    if user.dept not in a["departments"]:
        raise PageError(403, "无权反馈", "本部门不是该预警的接收单位,不能反馈。")
    form = await request.form(max_files=1 if upload else 0, max_fields=24, max_part_size=64 * 1024)
    try:
        return await _feedback(request, c, user, a, alert_id, form)
    finally:
        await form.close()


async def _feedback(request: Request, c, user: User, a: dict, alert_id: str, form) -> RedirectResponse:
    action, comment, result = (
        str(form.get(k) or "") if not isinstance(form.get(k), UploadFile) else ""
        for k in ("action", "comment", "result")
    )
    attachment = form.get("attachment")
    if action not in ACTIONS:
        raise PageError(400, "操作无效", f"未知操作 {action[:40]!r},本次操作未提交。")
    if a["status"] not in OPEN:
        raise PageError(400, "预警已结束", f"该预警当前状态为“{a['status']}”,不再接受反馈。")
    comment, result = comment.strip(), result.strip()
    if action in ("in_progress", "disposed", "not_ours") and not (comment or result):
        need = {"in_progress": "处置进展说明", "disposed": "处置结果", "not_ours": "非本部门的理由"}[action]
        raise PageError(400, "请填写说明", f"“{need}”不能为空,本次操作未提交。")
    outcome = outcome_of(form) if action == "disposed" else None
    sha = ""
    if isinstance(attachment, UploadFile) and attachment.filename:
        if action != "disposed":
            raise PageError(400, "附件只用于处置结果", "附件只能随“已处置”一起提交,本次操作未提交。")
        sha = store_attachment(request, attachment)
    return await _produce_feedback(
        c,
        user,
        a,
        alert_id,
        "反馈",
        department=user.dept,
        status=action,
        comment=comment,
        result=result if action == "disposed" else "",
        user=user.name,
        attachment_sha256=sha,
        outcome=outcome,
    )


def outcome_of(form) -> DisposalOutcome:
    """The 已处置 form's outcome: 核查结果 (verdict), the measures with their details, or the 误报 reason.
    A missing or inconsistent part is refused here, in words, before anything is sent."""

    def text(k: str) -> str:
        v = form.get(k)
        return "" if v is None or isinstance(v, UploadFile) else str(v).strip()

    verdict = text("verdict")
    if verdict not in ("confirmed", "not_confirmed", "false_alarm"):
        raise PageError(400, "请选择核查结果", "已处置须选择核查结果(属实、不属实或误报),本次操作未提交。")
    measures = [str(m) for m in form.getlist("measures") if str(m) in MEASURE_ZH] if verdict == "confirmed" else []
    if verdict == "confirmed" and not measures:
        raise PageError(400, "请选择处置措施", "核查属实须选择至少一项处置措施,本次操作未提交。")
    reason = text("reason") if verdict == "false_alarm" else ""
    if verdict == "false_alarm" and reason not in load_reasons():
        raise PageError(400, "请选择误报原因", "误报须选择原因,本次操作未提交。")
    fine = text("fine_yuan") if "fine" in measures else ""
    try:
        return DisposalOutcome(
            verdict=verdict,
            measures=measures,
            rectify_note=text("rectify_note") if "rectify" in measures else "",
            case_number=text("case_number") if "case" in measures else "",
            fine_yuan=float(fine) if fine else None,
            transfer_to=text("transfer_to") if "transfer" in measures else "",
            reason=reason,
        )
    except (ValidationError, ValueError):
        raise PageError(
            400,
            "处置措施不完整",
            "立案须填写案号,罚款须填写金额(元),移送须填写移送对象;本次操作未提交。",
        ) from None


@router.post("/alerts/{alert_id}/reassign", dependencies=[Depends(check_csrf)])
async def reassign(
    request: Request,
    alert_id: str,
    user: User = Depends(require_user),
    assign_to: list[str] = Form([]),
    reason: str = Form(""),
):
    """The task-force office decides who is responsible (专班研判改派): ``events.feedback`` with
    ``status=reassign``; the worker releases the departments that said 非本部门."""
    c = ctx(request)
    if user.role != "taskforce":
        raise PageError(403, "无权改派", "只有专班办公室可以改派责任部门,本次操作未提交。")
    a = await load_alert(request, user, alert_id)
    if a["status"] not in OPEN:
        raise PageError(400, "预警已结束", f"该预警当前状态为“{zh(AlertStatus, a['status'])}”,不能改派。")
    assign_to = [d for d in dict.fromkeys(x.strip() for x in assign_to) if d]
    if not assign_to:
        raise PageError(400, "请选择责任部门", "请选择改派的责任部门,本次操作未提交。")
    unknown = [d for d in assign_to if d not in c.catalog.departments]
    if unknown:
        raise PageError(400, "部门无效", f"未知部门 {', '.join(x[:20] for x in unknown)},本次操作未提交。")
    if not reason.strip():
        raise PageError(400, "请填写说明", "“研判理由”不能为空,本次操作未提交。")
    return await _produce_feedback(
        c,
        user,
        a,
        alert_id,
        "改派",
        department=c.catalog.taskforce_office,
        status="reassign",
        assign_to=assign_to,
        comment=reason.strip(),
        user=user.name,
    )


@router.post("/alerts/{alert_id}/transfer", dependencies=[Depends(check_csrf)])
async def transfer_answer(
    request: Request, alert_id: str, user: User = Depends(require_user), action: str = Form(""), comment: str = Form("")
):
    """The case transfer's receiver answers (行刑衔接): 受理 (``accepted``) or 不予受理 (``declined``,
    reason required; the worker returns the case to the lead department). Only a department the
    case was transferred to; anyone else 403, nothing produced."""
    c = ctx(request)
    if not user.can_act:
        raise PageError(403, "只读账号", "县领导账号只能查看,不能反馈。")
    a = await load_alert(request, user, alert_id)
    if user.dept not in a["transfer_to"]:
        raise PageError(403, "无权受理", "本部门不是该案件的移送对象,不能受理或退回。本次操作未提交。")
    if action not in ("accepted", "declined"):
        raise PageError(400, "操作无效", f"未知操作 {action[:40]!r},本次操作未提交。")
    if a["transfer"] != "transferred":
        raise PageError(
            400,
            "移送已答复",
            f"该案件移送状态为“{zh(TransferState, a['transfer'])}”,不再接受受理或退回。本次操作未提交。",
        )
    comment = comment.strip()
    if action == "declined" and not comment:
        raise PageError(400, "请填写说明", "“不予受理的理由”不能为空,本次操作未提交。")
    return await _produce_feedback(
        c, user, a, alert_id, "反馈", department=user.dept, status=action, comment=comment, user=user.name
    )


@router.get("/attachments/{sha}")
async def attachment(request: Request, sha: str, user: User = Depends(require_user)):
    if not SHA.match(sha):
        raise PageError(404, "附件不存在", "附件编号无效。")
    c = ctx(request)
    alerts = c.records.alerts_of(sha)  # the alerts it was uploaded to, recorded at upload
    if not alerts:
        raise PageError(404, "附件不存在", "没有上传到任何预警的该附件。")
    refusal: PageError | None = None
    for alert_id in alerts:
        try:
            if alert_id.startswith("RO-"):  # a 整改完成 attachment: whoever may see the order
                await load_order(request, user, alert_id)
                break
            await load_alert(request, user, alert_id)  # 403 unless the user may see that alert
            break
        except PageError as e:
            refusal = e
    else:
        assert refusal is not None  # alerts is not empty: each one refused
        raise refusal
    for ext, (_, media) in ALLOWED.items():
        p = Path(c.settings.workbench_dir) / "attachments" / sha[:2] / f"{sha}{ext}"
        if p.exists():
            return FileResponse(p, media_type=media, filename=f"{sha[:12]}{ext}")
    raise PageError(404, "附件不存在", "附件文件不在本机存储中。")


async def _produce_feedback(c, who: User, a: dict, alert_id: str, what: str, **fields) -> RedirectResponse:
    """Validate an action as the worker's edge would, produce it to ``events.feedback.<the user's
    department>`` and send the user to the alert page, which waits until the worker has processed it."""
    try:
        ev = c.producer.build(DisposalFeedback, entity_id=a["entity_id"], alert_id=alert_id, **fields)
    except ValidationError as e:
        raise PageError(
            400,
            "内容不合规",
            f"{what}内容未通过校验:"
            + "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            + "。本次操作未提交。",
        ) from None
    since = int(time.time() * 1000)
    await c.producer.send(ev, who.actor, who.dept)
    c.records.submitted(who.username, alert_id, ev.event_id, at=since / 1000)
    if fields.get("attachment_sha256"):
        c.records.attached(fields["attachment_sha256"], alert_id, who.username)
    return RedirectResponse(f"/alerts/{alert_id}?wait={ev.event_id}&since={since}", status_code=303)

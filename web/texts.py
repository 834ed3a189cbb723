"""Chinese for what the worker records in codes: alert_history rows and explanation signals.

The worker's audit trail (``alert_history``) keeps stable codes (``firing → amr,emergency``,
``acknowledged(已签收) 已核查``); a clerk reads Chinese with department names. Unknown shapes are
shown as recorded, never dropped.

>>> from riskwatch.domain.catalog import load_catalog
>>> cat = load_catalog()
>>> def row(kind, comment, from_status="", to_status=""):  # an alert_history row's coded fields
...     return {"kind": kind, "comment": comment, "from_status": from_status, "to_status": to_status}
>>> describe(row("notify", "firing → amr,emergency", "firing", "firing"), cat)
'发布 → 县市场监管局、县应急管理局'
>>> describe(row("feedback", "acknowledged(已签收) 已安排核查", "firing", "firing"), cat)
'已签收:已安排核查'
>>> describe(row("feedback", "reassign(专班改派) → agri:属农业农村局职责"), cat)
'专班改派 → 县农业农村局:属农业农村局职责'
>>> describe(row("notify", "released → amr", "firing", "firing"), cat)
'改派释放 → 县市场监管局'
>>> describe(row("receivers", "+agri -amr"), cat)
'增加 县农业农村局;解除 县市场监管局'
>>> describe(row("reminder", "ack urge #1: amr"), cat)
'超过签收时限,督促(第1次) → 县市场监管局'
>>> describe(row("transfer", "案件移送 → police,justice:检查发现D05;证据包 sha256:ab12", "firing", "transferred"), cat)
'案件移送 → 县公安局、县司法局:检查发现D05;证据包 sha256:ab12'
>>> declined = "退回牵头单位 amr\uff08县市场监管局\uff09\uff0c理由:未达立案标准"  # full-width, as typed
>>> describe(row("transfer", declined, "declined", "returned"), cat)
'退回牵头单位 县市场监管局,理由:未达立案标准'
>>> signal_zh("sensor.cold_chain_temp"), signal_zh("complaint.hygiene"), signal_zh("x.y")
('冷链温度', '投诉:卫生状况', 'x.y')
"""

from __future__ import annotations

import re

from schemas.vocabulary import (
    COMPLAINT_CATEGORY_ZH,
    DEADLINE_STAGE_ZH,
    DEVICE_FAULT_ZH,
    FEEDBACK_ZH,
    SENSOR_CHANNEL_ZH,
    VIDEO_CLASS_ZH,
    NoticeKind,
    zh,
)


def _depts(codes: str, cat) -> str:
    names = [cat.departments[c].name if c in cat.departments else c for c in codes.split(",") if c]
    return "、".join(names)


def describe(h: dict, cat) -> str:
    """One history row's comment in Chinese (department names instead of codes)."""
    kind, c = h.get("kind", ""), (h.get("comment") or "").strip()
    if kind == "notify":
        m = re.match(r"^(\w+) → (.*)$", c)
        if m:
            return f"{zh(NoticeKind, m[1])} → {_depts(m[2], cat)}"
    elif kind == "feedback":
        m = re.match(r"^(\w+)\([^)]*\)\s*(.*)$", c, re.S)
        if m:
            what, rest = FEEDBACK_ZH.get(m[1], m[1]), m[2].strip()
            if m[1] == "reassign":
                r = re.match(r"^→ ([\w,]+):(.*)$", rest, re.S)
                if r:
                    return f"{what} → {_depts(r[1], cat)}:{r[2]}"
            return f"{what}:{rest}" if rest else what
    elif kind == "receivers":
        parts = []
        for tok in c.split(" "):
            if tok.startswith("+"):
                parts.append(f"增加 {_depts(tok[1:], cat)}")
            elif tok.startswith("-"):
                parts.append(f"解除 {_depts(tok[1:], cat)}")
            elif tok:
                parts.append(tok)
        return ";".join(parts)
    elif kind == "reminder":
        m = re.match(r"^(\w+) (urge|escalate) #(\d+): ([\w,]+)$", c)
        if m:
            stage, what = DEADLINE_STAGE_ZH.get(m[1], m[1]), "督促" if m[2] == "urge" else "报专班升级督办"
            return f"超过{stage}时限,{what}(第{m[3]}次) → {_depts(m[4], cat)}"
    elif kind == "status":
        c = re.sub(r"score ([\d.]+) < ([\d.]+)", r"风险分 \1 低于解除线 \2", c)
        c = re.sub(r"score ([\d.]+) >= ([\d.]+)", r"风险分 \1 达到预警线 \2", c)
        return re.sub(r"^score ([\d.]+)$", r"风险分 \1", c)
    elif kind == "level":
        m = re.match(r"^\w+→\w+\((.*)\)$", c)
        if m:
            return m[1].replace("→", " → ")
    elif kind == "flapping":
        if c == "stable":
            return "已恢复稳定"
        m = re.match(r"^(\d+) changes in ([\d.]+) min$", c)
        if m:
            return f"{m[2]} 分钟内状态变化 {m[1]} 次,暂停通知"
    elif kind == "transfer":
        m = re.match(r"^案件移送 → ([\w,]+):(.*)$", c, re.S)
        if m:
            return f"案件移送 → {_depts(m[1], cat)}:{m[2]}"
        m = re.match("^退回牵头单位 [a-z_]+[(\uff08]([^)\uff09]*)[)\uff09][,\uff0c](.*)$", c, re.S)
        if m:
            return f"退回牵头单位 {m[1]},{m[2]}"
    elif kind == "silence":
        m = re.match(r"^silenced by (\S+) until (\S+)\s*(.*)$", c)
        if m:
            return f"静默期 {m[1]} 至 {m[2][:16].replace('T', ' ')} {m[3]}".strip()
        m = re.match(r"^silence (\S+) ended$", c)
        if m:
            return f"静默期 {m[1]} 结束"
    return c


def signal_zh(code: str) -> str:
    """Chinese name of an explanation signal (``sensor.cold_chain_temp`` → 冷链温度)."""
    head, _, tail = code.partition(".")
    if head == "sensor" and tail in SENSOR_CHANNEL_ZH:
        return SENSOR_CHANNEL_ZH[tail]
    if head == "anomaly" and tail in SENSOR_CHANNEL_ZH:
        return f"{SENSOR_CHANNEL_ZH[tail]}偏离历史规律(模型)"
    if head == "video":
        return f"视频识别:{VIDEO_CLASS_ZH.get(tail, tail)}"
    if head == "complaint":
        return f"投诉:{COMPLAINT_CATEGORY_ZH.get(tail, tail)}"
    if head == "rate":
        return {"complaint": "投诉频次异常升高", "video": "视频违规频次异常升高"}.get(tail, code)
    if head == "device":  # device health: device.<fault>.<channel>
        fault, _, channel = tail.partition(".")
        return f"设备{DEVICE_FAULT_ZH.get(fault, fault)}:{SENSOR_CHANNEL_ZH.get(channel, channel)}"
    if head == "silence" and tail in SENSOR_CHANNEL_ZH:
        return f"{SENSOR_CHANNEL_ZH[tail]}传感器离线无数据"
    if code == "inspection.violations":
        return "检查发现的问题(严重及以上)"
    if code == "inspection.p":
        return "检查不合格概率(模型)"
    if head == "rule":
        kind, _, what = tail.partition(".")
        if kind == "sensor" and what in SENSOR_CHANNEL_ZH:
            return f"规则:{SENSOR_CHANNEL_ZH[what]}超限"
        if kind == "video":
            return f"规则:视频{VIDEO_CLASS_ZH.get(what, what)}"
        if kind == "complaint":
            return f"规则:投诉{COMPLAINT_CATEGORY_ZH.get(what, what)}"
        if kind == "inspection":
            return "规则:检查结果"
    return code

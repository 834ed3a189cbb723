"""The Chinese text of one notification, as departments read it (robots, email, 企业微信 app).

One function builds it from the alert revision; the bridge puts it in the Alertmanager alert's
``text`` annotation, so every channel (robot adapter, email and 企业微信 templates) shows the same
words. It says: the level's colour word, the title, entity and township, the deadline, what is
asked (请签收 / 请反馈处置结果 / 已升级至专班办公室 ...), the receiving department's 联合惩戒 measures
when the entity is on a credit list (``reminder``: :func:`riskwatch.domain.credit.reminder_text`,
looked up by the bridge) and the link.

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 5, 1, 2, 0, tzinfo=timezone.utc)
>>> print(notification_text(kind="urge", level="red", title="锅炉超压", entity_name="鑫源热力", entity_id="E1",
...       township="北舞渡镇", status="firing", ack_due=t, dispose_due=None, alert_id="a1", revision=5,
...       message="【督促】...", department_name="县应急管理局", link="https://wb/alerts/a1"))
【红色预警·督促】锅炉超压
对象:鑫源热力(E1),北舞渡镇
签收时限:2026-05-01 10:00
要求:请签收
【督促】...
链接:https://wb/alerts/a1
预警编号 a1 · 第5版 · 致县应急管理局
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from schemas.vocabulary import OPEN_STATUSES, AlertStatus, Level, NoticeKind, zh

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
ACK_STATUSES = (AlertStatus.firing,)  # not yet acknowledged: asked to acknowledge (签收)


def ask(kind: str, status: str) -> tuple[str, str]:
    """(what is asked, which deadline applies: 'ack' | 'dispose' | '')."""
    if kind == "escalate":
        return "已升级至专班办公室,请专班办公室督办", "dispose"
    if kind == "not_ours":
        return "请专班办公室研判确定责任部门", ""
    if kind == "resolved":
        return "预警已解除,无需处置", ""
    if kind == "released":  # 专班改派: another department is now responsible
        return "已改由其他部门负责,贵单位无需继续处置", ""
    if kind in ("flapping",):
        return "仅通报,稳定后恢复通知", ""
    if status not in OPEN_STATUSES:
        return "仅通报", ""
    if status in ACK_STATUSES:
        return "请签收", "ack"
    return "请反馈处置结果", "dispose"


def fmt_time(t: datetime | None) -> str:
    return t.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if t is not None else ""


def notification_text(
    *,
    kind: str,
    level: str,
    title: str,
    entity_name: str,
    entity_id: str,
    township: str,
    status: str,
    ack_due: datetime | None,
    dispose_due: datetime | None,
    alert_id: str,
    revision: int,
    message: str,
    department_name: str = "",
    link: str = "",
    reminder: str = "",
) -> str:
    what, which = ask(kind, status)
    lines = [
        f"【{zh(Level, level)}预警·{zh(NoticeKind, kind)}】{title}",
        f"对象:{entity_name or entity_id}"
        + (f"({entity_id})" if entity_name else "")
        + (f",{township}" if township else ""),
    ]
    if which == "ack" and ack_due is not None:
        lines.append(f"签收时限:{fmt_time(ack_due)}")
    elif which == "dispose" and dispose_due is not None:
        lines.append(f"处置时限:{fmt_time(dispose_due)}")
    lines.append(f"要求:{what}")
    if message:
        lines.append(message)
    if reminder:
        lines += reminder.splitlines()
    if link:
        lines.append(f"链接:{link}")
    lines.append(f"预警编号 {alert_id} · 第{revision}版" + (f" · 致{department_name}" if department_name else ""))
    return "\n".join(lines)


def alert_text(alert, department_name: str = "", link: str = "", reminder: str = "") -> str:
    """:func:`notification_text` of a :class:`schemas.events.Alert` revision."""
    return notification_text(
        kind=alert.notification or "",
        level=alert.level.value,
        title=alert.title,
        entity_name=alert.entity_name,
        entity_id=alert.entity_id,
        township=alert.township,
        status=alert.status.value,
        ack_due=alert.ack_due,
        dispose_due=alert.dispose_due,
        alert_id=alert.alert_id,
        revision=alert.revision,
        message=alert.message,
        department_name=department_name,
        link=link,
        reminder=reminder,
    )

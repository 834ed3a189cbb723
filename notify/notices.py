"""A notice (双告知, 待研判, township surge, 督导单) as an Alertmanager alert: one more notification kind.

``riskwatch notify`` reads ``notices.delivery`` (``streams/engine/notices.py`` Delivery: one record per
delivery, 督促 or escalation of a notice to one department) beside the ``alerts.<dept>`` topics and
posts each as an alert with the same routing labels as an alert's (``source="riskwatch"``,
``department``), so the department's receivers of ``riskwatch/data/receivers.yaml`` get it. Its label
set is its identity (``notice_id``, also as ``alert_id``, ``seq``, ``department``): a redelivered record is
notified once. Its annotations carry ``text`` (what people read; the robots escape it line by line) and
``notice_title`` (the e-mail subject), not an alert's ``title``/level, so no alert wording applies.

>>> from riskwatch.settings import Settings
>>> from riskwatch.domain.catalog import load_catalog
>>> d = {"notice_id": "N1", "department": "amr", "kind": "dual_notification", "notification": "urge", "seq": 2,
...      "entity_id": "E1", "text": "新登记主体 鑫源食品", "deadline": "2026-12-08T16:00:00+08:00",
...      "at": "2026-12-08T16:00:00+08:00"}
>>> a = am_notice(d, Settings(_env_file=None), load_catalog())
>>> a["labels"]["alertname"], a["labels"]["notification"], a["annotations"]["text"].splitlines()[0]
('riskwatch_notice_urge', 'notice_urge', '【双告知·督促】新登记主体 鑫源食品')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notify.text import fmt_time
from riskwatch.domain.catalog import Catalog
from riskwatch.settings import Settings
from schemas.privacy import mask_pii
from schemas.vocabulary import NoticeKind, NoticeType, zh

# the notification of a notice → the alert notification word (schemas.vocabulary.NoticeKind); a first
# delivery has none: 【双告知】…
_WORD = {"notice": "", "urge": NoticeKind.urge.zh, "escalate": NoticeKind.escalate.zh}


def notice_text(d: dict[str, Any], department_name: str, link: str) -> str:
    """The message people read (e-mail, 企业微信, robots): masked text, deadline, what to do, link."""
    kind = str(d["kind"])
    verb = "答复" if kind == NoticeType.supervision else "认领(确认收到)或提出异议"
    lines = [
        f"【{'·'.join(x for x in (zh(NoticeType, kind), _WORD.get(d['notification'], d['notification'])) if x)}】"
        + mask_pii(str(d["text"])),
        f"时限:{fmt_time(datetime.fromisoformat(d['deadline']))}前在工作台{verb}",
    ]
    if link:
        lines.append(f"链接:{link}")
    lines.append(f"通知编号 {d['notice_id']} · 第{d['seq']}版 · 致{department_name}")
    return "\n".join(lines)


def am_notice(d: dict[str, Any], settings: Settings, catalog: Catalog) -> dict[str, Any]:
    """The Alertmanager alert of one notice notification (a ``notices.delivery`` record)."""
    dept = str(d["department"])
    dname = catalog.dept_name(dept) if dept in catalog.departments else dept
    link = f"{settings.workbench_url}/notices/{d['notice_id']}"
    what = f"notice_{d['notification']}" if d["notification"] != "notice" else "notice"
    text = notice_text(d, dname, link)
    return {
        "labels": {
            "source": "riskwatch",
            "department": dept,
            "alert_id": str(d["notice_id"]),  # the notification's identity for consumers keyed by alert_id
            "notice_id": str(d["notice_id"]),
            "seq": str(d["seq"]),
            "notification": what,
            "kind": str(d["kind"]),
            "alertname": f"riskwatch_{what}",
        },
        "annotations": {
            "notice_title": text.splitlines()[0],  # the e-mail subject (notify/riskwatch.tmpl)
            "summary": mask_pii(str(d["text"])),
            "text": text,
            "department_name": dname,
            "deadline": str(d["deadline"]),
            "entity_id": str(d.get("entity_id", "")),
            "link": link,
        },
        "startsAt": str(d["at"]),
        "generatorURL": link,
    }

"""``alertmanager.yml`` from the catalog and the county's receivers file (``riskwatch alertmanager config``).

* One route per department (``department="<code>"`` and ``source="riskwatch"``) to a receiver
  ``dept-<code>`` with that department's channels; pipeline alerts (Prometheus rules, any alert
  without ``source="riskwatch"``) to ``ops``; a data source's own alarms (``event_source="<name>"``:
  silent, garbage, clock skew) also to its owner's receiver ``source-<name>`` (``sources:`` in the
  receivers file), ahead of ``ops`` with ``continue``.
* riskwatch routes group by every label (``group_by: ['...']``): each notification (its own
  ``alert_id``/``seq``/``department`` label set) is one group and one message. ``send_resolved``
  is off (riskwatch's resolution is a notification of its own), and ``repeat_interval`` (168 h)
  is longer than any riskwatch alert lives in Alertmanager (``notify_hold_seconds``), so
  Alertmanager never repeats one.
* Email, generic webhooks and 企业微信 application messages are Alertmanager's own receivers;
  企业微信/钉钉 group robots go to the robot adapter (:mod:`notify.robots`) at
  ``<robot_url>/wecom/<dept>/<i>`` and ``<robot_url>/dingtalk/<dept>/<i>``, one webhook per robot,
  so Alertmanager retries each robot on its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from notify.receivers import Channels, Receivers
from riskwatch.domain.catalog import Catalog

TEMPLATE = Path(__file__).with_name("riskwatch.tmpl")  # message templates (package data: also in the image)
OPS = "_ops"  # the ops team's path segment at the robot adapter
RISKWATCH_TIMING = {"group_wait": "0s", "group_interval": "1m", "repeat_interval": "168h"}
OPS_TIMING = {"group_wait": "10s", "group_interval": "1m", "repeat_interval": "4h"}


def _receiver(name: str, who: str, ch: Channels, robot_url: str, send_resolved: bool) -> dict:
    r: dict = {"name": name}
    hooks = [
        {"url": f"{robot_url}/wecom/{who}/{i}", "send_resolved": send_resolved} for i in range(len(ch.wecom_robot))
    ]
    hooks += [
        {"url": f"{robot_url}/dingtalk/{who}/{i}", "send_resolved": send_resolved} for i in range(len(ch.dingtalk))
    ]
    hooks += [{"url": str(u), "send_resolved": send_resolved} for u in ch.webhook]
    if hooks:
        r["webhook_configs"] = hooks
    if ch.email:
        r["email_configs"] = [
            {
                "to": ", ".join(ch.email),
                "send_resolved": send_resolved,
                "headers": {"Subject": '{{ template "riskwatch.subject" . }}'},
                "html": '{{ template "riskwatch.html" . }}',
                "text": '{{ template "riskwatch.text" . }}',
            }
        ]
    if ch.wechat_app:
        w = ch.wechat_app
        cfg = {"agent_id": w.agent_id, "message": '{{ template "riskwatch.text" . }}', "send_resolved": send_resolved}
        cfg.update({k: v for k, v in (("to_party", w.to_party), ("to_user", w.to_user), ("to_tag", w.to_tag)) if v})
        r["wechat_configs"] = [cfg]
    return r


def build(catalog: Catalog, receivers: Receivers, robot_url: str) -> dict:
    """The Alertmanager configuration as a dict (see module docstring)."""
    robot_url = robot_url.rstrip("/")
    glob: dict = {"resolve_timeout": "5m"}
    if receivers.email_server:
        e = receivers.email_server
        glob.update(smtp_smarthost=e.smarthost, smtp_from=e.sender, smtp_require_tls=e.require_tls)
        if e.auth_username:
            glob.update(smtp_auth_username=e.auth_username, smtp_auth_password=e.auth_password.get_secret_value())
    if receivers.wechat:
        w = receivers.wechat
        glob.update(
            wechat_api_url=str(w.api_url),
            wechat_api_corp_id=w.corp_id,
            wechat_api_secret=w.api_secret.get_secret_value(),
        )
    routes = [
        {
            "receiver": f"source-{name}",
            "matchers": ['source!="riskwatch"', f'event_source="{name}"'],
            "group_by": ["alertname", "event_source"],
            "continue": True,
            **OPS_TIMING,
        }
        for name in receivers.sources
    ]
    routes += [
        {
            "receiver": "ops",
            "matchers": ['source!="riskwatch"'],
            "group_by": ["alertname", "job", "instance"],
            **OPS_TIMING,
        }
    ]
    rcvs = [{"name": "unrouted"}, _receiver("ops", OPS, receivers.ops, robot_url, True)]
    rcvs += [_receiver(f"source-{n}", n, ch, robot_url, True) for n, ch in receivers.sources.items()]
    for code in catalog.departments:
        routes.append({"receiver": f"dept-{code}", "matchers": ['source="riskwatch"', f'department="{code}"']})
        rcvs.append(_receiver(f"dept-{code}", code, receivers.for_department(code), robot_url, False))
    return {
        "global": glob,
        "templates": ["riskwatch.tmpl"],
        "route": {"receiver": "unrouted", "group_by": ["..."], **RISKWATCH_TIMING, "routes": routes},
        "receivers": rcvs,
    }


def write(catalog: Catalog, receivers: Receivers, robot_url: str, out_dir: Path) -> Path:
    """Write ``alertmanager.yml`` (mode 0600: it may hold SMTP/企业微信 secrets) and the message
    templates into ``out_dir``; return the config's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "alertmanager.yml"
    text = (
        "# Generated by `riskwatch alertmanager config` from the catalog and the receivers file; do not edit.\n"
        + yaml.safe_dump(build(catalog, receivers, robot_url), allow_unicode=True, sort_keys=False, width=200)
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)
    shutil.copyfile(TEMPLATE, out_dir / TEMPLATE.name)
    return path


def empty_departments(catalog: Catalog, receivers: Receivers) -> list[str]:
    """Departments without any channel (their notifications reach nobody)."""
    return [c for c in catalog.departments if receivers.for_department(c).empty]

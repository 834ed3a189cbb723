"""A real notification stack around a test pipeline: Alertmanager, the robot adapter and the bridge
(real processes started by riskwatch/tools/services.py), fake receivers and an SMTP server."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from riskwatch.tools.runner import wait_for
from riskwatch.tools.services import Alertmanager, Prometheus, bridge, robots
from tests.conftest import free_port
from tests.notify_fakes import FakeReceivers, FakeSmtp


def write_receivers(path: Path, catalog, fake: FakeReceivers, smtp: FakeSmtp) -> Path:
    base = f"http://127.0.0.1:{fake.port}"
    depts: dict[str, dict[str, list[Any]]] = {}  # code -> channel -> addresses (a 钉钉 robot: url and secret)
    for code in catalog.departments:
        depts[code] = {"webhook": [f"{base}/hook/{code}"]}
    depts["amr"].update(
        {
            "wecom_robot": [f"{base}/wecom/amr?key=test-wecom-key"],
            "dingtalk": [{"url": f"{base}/dingtalk/amr?access_token=test-token", "secret": fake.dingtalk_secret}],
            "email": ["amr@county.test"],
        }
    )
    doc = {
        "email_server": {"smarthost": f"127.0.0.1:{smtp.port}", "from": "riskwatch@county.test", "require_tls": False},
        "ops": {"webhook": [f"{base}/hook/_ops"]},
        "departments": depts,
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class NotifyStack:
    def __init__(self, pipeline, tmp: Path):
        self.p = pipeline
        self.fake = FakeReceivers(free_port()).start()
        self.smtp = FakeSmtp(free_port()).start()
        am = free_port()
        self.settings = pipeline.settings.model_copy(
            update=dict(
                alertmanager_port=am,
                alertmanager_url=f"http://127.0.0.1:{am}",
                alertmanager_data_dir=tmp / "am",
                receivers_path=write_receivers(tmp / "receivers.yaml", pipeline.catalog, self.fake, self.smtp),
                robot_port=free_port(),
                notify_port=free_port(),
                prometheus_port=free_port(),
                notify_resend_seconds=2.0,
                notify_retry_max_seconds=1.0,
                prometheus_scrape_seconds=1.0,
            )
        )
        self.am = Alertmanager(self.settings)
        self.robots = robots(self.settings)
        self.bridge = bridge(self.settings)
        self.prometheus: Prometheus | None = None

    def start(self) -> NotifyStack:
        for svc in (self.am, self.robots, self.bridge):
            svc.start(log=lambda m: None)
        return self

    def close(self) -> None:
        for svc in (self.prometheus, self.bridge, self.robots, self.am):
            if svc is not None:
                svc.stop(timeout=10)
        self.fake.stop()
        self.smtp.stop()

    # --- what was decided and what arrived ---------------------------------------------------
    def decided(self, dept: str, notices: bool = True) -> list[tuple[str, str, str]]:
        """(alert_id, seq, notification) of every message on alerts.<dept>: what riskwatch decided; then
        (``notices``) its notices' notifications on notices.delivery (双告知 of the test's registrations)."""
        import orjson

        out = [
            (a["alert_id"], str(a["revision"]), a["notification"])
            for a in (orjson.loads(v) for _, v in self.p.read_topic(f"alerts.{dept}"))
        ]
        if notices:
            out += [
                (
                    n["notice_id"],
                    str(n["seq"]),
                    "notice" if n["notification"] == "notice" else f"notice_{n['notification']}",
                )
                for n in (orjson.loads(v) for _, v in self.p.read_topic("notices.delivery"))
                if n["department"] == dept
            ]
        return out

    def delivered(self, dept: str) -> Counter:
        """(alert_id, seq, notification) → how often Alertmanager delivered it to the department's webhook."""
        return Counter(
            (a["labels"]["alert_id"], a["labels"]["seq"], a["labels"]["notification"])
            for a in self.fake.hook_alerts(dept)
        )

    def wait_delivered(self, depts, timeout: float = 90.0) -> dict[str, list]:
        decided = {d: self.decided(d) for d in depts}

        def done():
            return all(set(self.delivered(d)) >= set(decided[d]) for d in depts)

        wait_for(
            done,
            timeout,
            "every decided notification at its department's webhook: "
            + ", ".join(f"{d} {len(self.delivered(d))}/{len(decided[d])}" for d in depts)
            + f"; see {self.bridge.log_file} and {self.am.log_file}",
            interval=0.3,
        )
        return decided

"""Notification delivery without the pipeline: the receivers file, the generated alertmanager.yml
(amtool check-config), the Prometheus rules (promtool), the Alertmanager alert of one revision,
and the robot adapter against local fakes of the 企业微信 and 钉钉 robot APIs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from notify import amconfig
from notify.bridge import am_alert
from notify.receivers import ReceiversError, load_receivers, variables
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.services import RULES
from schemas.events import Alert
from tests.conftest import free_port
from tests.notify_fakes import FakeReceivers

CATALOG = load_catalog()
ENV = {name: "x" for name in variables()}


def _file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "receivers.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "text, line, words",
    [
        (
            "departments:\n  amr:\n    email: [a@b.cn]\n  nosuch:\n    webhook: [http://x/]\n",
            4,
            "unknown department code 'nosuch'",
        ),
        ("departments:\n  amr:\n    webhook:\n      - http://ok/\n      - not a url\n", 5, "URL"),
        (
            "departments:\n  amr:\n    dingtalk:\n      - url: https://oapi.dingtalk.com/robot/send?access_token=t\n "
            "       secret: ''\n",
            5,
            "signing secret",
        ),
        (
            "departments:\n  amr:\n    dingtalk:\n      - url: https://oapi.dingtalk.com/robot/send?access_token=t\n",
            4,
            "secret",
        ),
        (
            'departments:\n  amr:\n    wecom_robot: ["https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${NOPE_KEY}"]\n',
            3,
            "NOPE_KEY is not set",
        ),
        ("departments:\n  amr:\n    email: [amr@county.cn]\n", 3, "email_server"),
    ],
)
def test_bad_receivers_file_is_refused_naming_the_line(tmp_path, text, line, words):
    with pytest.raises(ReceiversError) as e:
        load_receivers(_file(tmp_path, text), CATALOG, env={})
    assert f"receivers.yaml line {line} " in str(e.value) and words in str(e.value), str(e.value)


def test_generated_alertmanager_config_passes_amtool_and_routes_each_department(tmp_path):
    receivers = load_receivers(catalog=CATALOG, env=ENV)
    path = amconfig.write(CATALOG, receivers, "http://127.0.0.1:19095", tmp_path)
    amtool = shutil.which("amtool")
    assert amtool, "amtool (Debian prometheus-alertmanager) is required"
    r = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(path.read_text())
    assert path.stat().st_mode & 0o077 == 0  # may hold SMTP / 企业微信 secrets
    route = cfg["route"]
    assert route["group_by"] == ["..."] and route["repeat_interval"] == "168h"
    dept_routes = [r for r in route["routes"] if r["receiver"].startswith("dept-")]
    assert [r["receiver"] for r in dept_routes] == [f"dept-{c}" for c in CATALOG.departments]
    amr = next(r for r in cfg["receivers"] if r["name"] == "dept-amr")
    urls = [h["url"] for h in amr["webhook_configs"]]
    assert urls == ["http://127.0.0.1:19095/wecom/amr/0", "http://127.0.0.1:19095/dingtalk/amr/0"]
    assert all(not h["send_resolved"] for h in amr["webhook_configs"]) and not amr["email_configs"][0]["send_resolved"]
    tf = next(r for r in cfg["receivers"] if r["name"] == "dept-taskforce")
    assert tf["wechat_configs"][0]["to_party"] == "2"
    ops = next(r for r in route["routes"] if r["receiver"] == "ops")
    assert ops["matchers"] == ['source!="riskwatch"']
    vendor = next(r for r in cfg["receivers"] if r["name"] == "source-iot-gw-07")
    assert vendor["email_configs"][0]["to"] == "support@iot-vendor.example"
    # amtool routes a riskwatch notification to its department only, a pipeline alert to ops
    for labels, want in (
        (["source=riskwatch", "department=police", "alert_id=a1", "seq=3"], "dept-police"),
        (["alertname=RiskwatchWorkerDown", "job=riskwatch-worker"], "ops"),
        (["alertname=RiskwatchSourceSilent", "event_source=iot-gw-07"], "source-iot-gw-07,ops"),
        (["alertname=RiskwatchSourceSilent", "event_source=other-vendor"], "ops"),
    ):
        r = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path}", *labels], capture_output=True, text=True
        )
        assert r.stdout.strip() == want, r.stdout + r.stderr


def test_prometheus_rules_check_and_unit_tests():
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) is required"
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0 and "10 rules found" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", "rules_test.yml"], capture_output=True, text=True, cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def _alert(**kw) -> Alert:
    t = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    base = dict(
        alert_id="a1",
        revision=4,
        fingerprint="E1|8|r",
        entity_id="E1",
        entity_name="鑫源热力",
        township="北舞渡镇",
        item_id=8,
        item_name="特种设备综合监管",
        rule="rule.sensor.boiler_pressure",
        level="red",
        level_zh="红色",
        status="firing",
        score=100,
        title="锅炉超压",
        message="【督促】…",
        lead_department="amr",
        departments=["amr", "police"],
        first_seen=t,
        last_seen=t,
        updated_at=t,
        source_event_id="ev1",
        notification="urge",
        recipients=["police"],
        ack_due=t + timedelta(hours=1),
        dispose_due=t + timedelta(hours=12),
    )
    return Alert(**{**base, **kw})


def test_one_revision_becomes_one_alertmanager_alert_with_its_own_labels():
    s = Settings(_env_file=None)
    now = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    a = am_alert(_alert(url="https://wb.county.cn/alerts/a1"), "police", s, CATALOG, now)
    assert a["labels"] == {
        "source": "riskwatch",
        "department": "police",
        "alert_id": "a1",
        "seq": "4",
        "first_seen": "2026-05-01T02:00:00+00:00",
        "notification": "urge",
        "item": "8",
        "level": "red",
        "township": "北舞渡镇",
        "alertname": "riskwatch_urge",
    }
    ann = a["annotations"]
    assert ann["link"] == "https://wb.county.cn/alerts/a1" and ann["ack_due"].startswith("2026-05-01T03:00")
    assert (
        ann["text"].startswith("【红色预警·督促】锅炉超压")
        and "要求:请签收" in ann["text"]
        and "致县公安局" in ann["text"]
    )
    assert "endsAt" not in a  # set at each post: now + notify_hold_seconds
    b = am_alert(_alert(revision=5, notification="resolved", status="resolved"), "police", s, CATALOG, now)
    assert b["labels"]["seq"] == "5" and "无需处置" in b["annotations"]["text"]  # a new label set: a new message
    later = am_alert(_alert(updated_at=now + timedelta(days=1)), "police", s, CATALOG, now)
    assert later["startsAt"] == now.isoformat()  # never in the future (Alertmanager would refuse endsAt < startsAt)


def test_robot_adapter_signs_dingtalk_backs_off_rate_limits_and_keeps_secrets_out_of_logs(tmp_path, caplog):
    from aiohttp import ClientSession, web

    from notify.robots import RobotAdapter

    fake = FakeReceivers(free_port()).start()
    base = f"http://127.0.0.1:{fake.port}"
    doc = {
        "departments": {
            "amr": {
                "wecom_robot": [f"{base}/wecom/amr?key=k-secret"],
                "dingtalk": [{"url": f"{base}/dingtalk/amr?access_token=t-secret", "secret": fake.dingtalk_secret}],
            },
            "police": {"dingtalk": [{"url": f"{base}/dingtalk/police?access_token=t2", "secret": "SECwrong"}]},
        }
    }
    receivers = load_receivers(_file(tmp_path, yaml.safe_dump(doc)), CATALOG, env={})
    payload = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "riskwatch_firing"},
                "annotations": {"text": "【红色预警·发布】锅炉超压\n要求:请签收"},
            }
        ],
    }
    port = free_port()

    async def run() -> list[tuple[int, str]]:
        runner = web.AppRunner(RobotAdapter(receivers, backoff=(0.05, 0.05)).app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        out = []
        try:
            async with ClientSession() as c:
                for path in (
                    "/wecom/amr/0",
                    "/dingtalk/amr/0",
                    "/dingtalk/police/0",
                    "/wecom/amr/0",
                    "/wecom/amr/0",
                    "/wecom/edu/0",
                ):
                    async with c.post(f"http://127.0.0.1:{port}{path}", json=payload) as r:
                        out.append((r.status, await r.text()))
        finally:
            await runner.cleanup()
        return out

    try:
        fake.rate_limit("/wecom/amr", 1)  # first: one rate-limit answer, backed off, then delivered
        first = asyncio.run(run())
    finally:
        fake.stop()
    assert [s for s, _ in first[:3]] == [200, 200, 400]  # police's robot: wrong secret → signature refused, not retried
    ding = fake.ok("/dingtalk/amr")[0].body
    assert ding["msgtype"] == "markdown" and ding["markdown"]["title"].startswith("【红色预警·发布】")
    wecom = fake.ok("/wecom/amr")[0].body
    assert wecom == {"msgtype": "markdown", "markdown": {"content": "【红色预警·发布】锅炉超压\n要求:请签收"}}
    assert [r.answer.get("errcode") for r in fake.requests if r.path == "/wecom/amr"][:2] == [45009, 0]
    assert first[5][0] == 404 and "riskwatch alertmanager config" in first[5][1]
    logs = caplog.text
    assert "k-secret" not in logs and "t-secret" not in logs and fake.dingtalk_secret not in logs


def test_robot_adapter_posts_a_notification_alertmanager_repeats_once(tmp_path):
    """Alertmanager sends a notification again after its restart when it stopped while sending it;
    the group reads it once. A new revision, and an ops alert, still go out."""
    from aiohttp import ClientSession, web

    from notify.robots import RobotAdapter

    fake = FakeReceivers(free_port()).start()
    doc = {"departments": {"amr": {"wecom_robot": [f"http://127.0.0.1:{fake.port}/wecom/amr?key=k"]}}}
    receivers = load_receivers(_file(tmp_path, yaml.safe_dump(doc)), CATALOG, env={})
    port = free_port()

    def note(seq: str) -> dict:
        lab = {"source": "riskwatch", "alert_id": "a1", "first_seen": "t0", "seq": seq, "notification": "firing"}
        return {"alerts": [{"status": "firing", "labels": lab, "annotations": {"text": f"【黄色预警】第{seq}版"}}]}

    ops = {"alerts": [{"status": "firing", "labels": {"alertname": "RiskwatchLag"}, "annotations": {}}]}

    async def run() -> list[str]:
        runner = web.AppRunner(RobotAdapter(receivers, backoff=(0.05,)).app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        out = []
        try:
            async with ClientSession() as c:
                forged = note("3")  # someone on the network copies the labels of a notification to come
                forged["alerts"][0]["annotations"]["text"] = "伪造"
                for body in (note("1"), note("1"), note("2"), ops, ops, forged, note("3")):
                    async with c.post(f"http://127.0.0.1:{port}/wecom/amr/0", json=body) as r:
                        out.append(f"{r.status} {await r.text()}")
        finally:
            await runner.cleanup()
        return out

    try:
        answers = asyncio.run(run())
        posted = [r.body["markdown"]["content"] for r in fake.ok("/wecom/amr")]
    finally:
        fake.stop()
    assert answers == ["200 ok", "200 already delivered", "200 ok", "200 ok", "200 ok", "200 ok", "200 ok"]
    assert len(posted) == 6 and sum("第1版" in p for p in posted) == 1
    assert any("第3版" in p for p in posted)  # the forged post with its labels did not silence the real one


def test_robot_adapter_answers_503_while_a_robot_stays_rate_limited(tmp_path):
    from aiohttp import ClientSession, web

    from notify.robots import RobotAdapter

    fake = FakeReceivers(free_port()).start()
    doc = {"departments": {"amr": {"wecom_robot": [f"http://127.0.0.1:{fake.port}/wecom/amr?key=k"]}}}
    receivers = load_receivers(_file(tmp_path, yaml.safe_dump(doc)), CATALOG, env={})
    port = free_port()

    async def run() -> int:
        runner = web.AppRunner(RobotAdapter(receivers, backoff=(0.05, 0.05)).app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with ClientSession() as c, c.post(f"http://127.0.0.1:{port}/wecom/amr/0", json={"alerts": []}) as r:
                return r.status
        finally:
            await runner.cleanup()

    try:
        fake.rate_limit("/wecom/amr", 10)
        assert asyncio.run(run()) == 503  # Alertmanager retries later
        assert len([r for r in fake.requests if r.path == "/wecom/amr"]) == 3  # first try + two backed-off retries
    finally:
        fake.stop()


def test_compose_runs_alertmanager_prometheus_bridge_and_robots_with_generated_config(tmp_path):
    from riskwatch.tools.services import write_prometheus_config

    root = Path(__file__).resolve().parents[1]
    services = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    assert services["alertmanager"]["image"] == "prom/alertmanager:v0.25.0"  # = Debian's prometheus-alertmanager in CI
    assert services["prometheus"]["image"] == "prom/prometheus:v2.42.0"
    assert services["alertmanager-config"]["command"][:3] == ["riskwatch", "alertmanager", "config"]
    assert services["notify"]["command"] == ["riskwatch", "notify", "run"]
    assert services["robots"]["command"] == ["riskwatch", "notify", "robots"]
    # the secrets the receivers file names reach the robot adapter and the config job
    for svc in ("robots", "alertmanager-config"):
        assert set(variables()) <= set(services[svc]["environment"]), svc
    workers = [n for n, s in services.items() if s.get("command", [])[:2] == ["riskwatch", "worker"]]
    # deploy/prometheus/prometheus.yml is the generator's output for the compose services
    want = write_prometheus_config(
        Settings(_env_file=None),
        tmp_path / "p.yml",
        [f"{w}:6066" for w in workers],
        ["notify:9096"],
        ["robots:9095"],
        "alertmanager:9093",
        "/etc/prometheus/rules.yml",
    )
    assert (root / "deploy/prometheus/prometheus.yml").read_text() == want.read_text(), (
        "regenerate deploy/prometheus/prometheus.yml (riskwatch/tools/services.py write_prometheus_config)"
    )


def test_bench_percentiles():
    from riskwatch.tools.bench.notify import percentiles

    assert percentiles([]) == {"n": 0}
    p = percentiles([i / 100 for i in range(1, 101)])
    assert (p["p50"], p["p99"], p["max"]) == (0.5, 0.99, 1.0)


def test_cli_alertmanager_config_checks_with_amtool_and_refuses_a_missing_secret(tmp_path):
    import os
    import sys

    env = {**os.environ, **ENV, "RISKWATCH_ENV_FILE": str(tmp_path / "none.env")}
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "alertmanager", "config", "--out", str(tmp_path / "am")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.strip() == str(tmp_path / "am" / "alertmanager.yml") and (tmp_path / "am" / "riskwatch.tmpl").exists()
    )
    env.pop("DINGTALK_AMR_SECRET")
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "alertmanager", "config", "--out", str(tmp_path / "am2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "(departments.amr.dingtalk.0.secret): environment variable DINGTALK_AMR_SECRET is not set" in r.stderr

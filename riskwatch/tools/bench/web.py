"""Workbench server time: ``riskwatch web bench [--alerts 100000 --history 1000000 --requests 200]``.

1. seed a fresh embedded ClickHouse (a child process: chDB allows one process per directory) with
   ``alerts`` alerts (two revisions each) and ``history`` alert_history rows through the
   product's own row code (``sinks.rows``) and migrations;
2. start a real worker on it (the workbench reads through its ``/query``) and ``riskwatch web run``;
3. log in as a department (amr) and request the inbox and alert pages ``requests`` times each;
   the app's own time per request comes from its ``Server-Timing`` header (the client's wall
   time is reported too);
4. print p50/p95 of both and the app's RSS (VmRSS, peak VmHWM), write JSON to ``out``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskwatch.settings import Settings

DEPTS = ("amr", "emergency", "eco", "health", "police", "fire", "urban", "agri", "commerce", "taskforce")
STATUSES = ("firing", "acknowledged", "disposing", "resolved", "closed")


def seed(url: str, alerts: int, history: int, seed: int = 7) -> None:
    """Child process: migrate and fill the ClickHouse at ``url``."""
    from riskwatch.domain.catalog import load_catalog
    from schemas.events import Alert, Contribution
    from schemas.vocabulary import Level
    from sinks.clickhouse import INSERT_SETTINGS, make_client
    from sinks.migrations import migrate
    from sinks.rows import COLUMNS, alert_history_row, alert_row

    rng = random.Random(seed)
    cat = load_catalog()
    items = list(cat.items.values())
    client = make_client(url)
    migrate(client, "riskwatch")
    now = datetime.now(UTC)
    per = max(1, history // max(1, alerts))
    batch: list[tuple[object, ...]] = []
    hist: list[tuple[object, ...]] = []
    t0 = time.monotonic()

    def flush(final: bool = False) -> None:
        if batch:
            client.insert(
                "alerts", batch, column_names=list(COLUMNS["alerts"]), database="riskwatch", settings=INSERT_SETTINGS
            )
            batch.clear()
        if hist and (final or len(hist) >= 200_000):
            client.insert(
                "alert_history",
                hist,
                column_names=list(COLUMNS["alert_history"]),
                database="riskwatch",
                settings=INSERT_SETTINGS,
            )
            hist.clear()

    for i in range(alerts):
        it = rng.choice(items)
        depts = list(dict.fromkeys([it.lead, *it.cooperating, *rng.sample(DEPTS, rng.randint(0, 2))]))
        level = Level(rng.choice(("blue", "yellow", "yellow", "orange", "red")))
        status = rng.choices(STATUSES, weights=(3, 2, 2, 10, 40))[0]
        first = now - timedelta(days=rng.uniform(0, 365))
        aid = f"{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}"
        for rev in (1, 2):
            a = Alert(
                alert_id=aid,
                revision=rev,
                fingerprint=f"E{i}|{it.id}|rule.sensor",
                entity_id=f"E{i % 20000:05d}",
                entity_name=f"舞阳县第{i % 20000}号企业",
                entity_kind=it.objects[0],
                township=rng.choice(("舞泉镇", "吴城镇", "北舞渡镇", "莲花镇")),
                item_id=it.id,
                item_name=it.name,
                rule="rule.sensor.cold_chain_temp",
                level=level,
                level_zh=level.zh,
                status="firing" if rev == 1 else status,
                score=rng.uniform(40, 99),
                title="冷链温度超过8℃上限",
                message="【预警】",
                explanation=[Contribution(signal="rule.sensor", value=1.0, detail="超限")],
                lead_department=depts[0],
                departments=depts,
                first_seen=first,
                last_seen=first + timedelta(hours=1),
                updated_at=first + timedelta(hours=rev),
                source_event_id=f"ev-{i}-{rev}",
                ack_due=first + timedelta(hours=2),
                dispose_due=first + timedelta(days=1),
            )
            batch.append(alert_row(a))
        for k in range(per):
            hist.append(
                alert_history_row(
                    aid,
                    first + timedelta(minutes=10 * k),
                    "firing",
                    "acknowledged" if k % 3 else "firing",
                    f"{depts[k % len(depts)]}/用户{k}" if k % 2 else "detector",
                    f"第 {k} 条记录",
                    seq=k + 1,
                    kind="feedback" if k % 2 else "status",
                    entity_id=a.entity_id,
                )
            )
        if len(batch) >= 20_000:
            flush()
            print(f"  seeded {i + 1:,} alerts ({time.monotonic() - t0:.0f}s)", file=sys.stderr, flush=True)
    flush(final=True)
    client.command("OPTIMIZE TABLE riskwatch.alerts FINAL")
    n = client.query(
        "SELECT (SELECT count() FROM riskwatch.alerts), (SELECT count() FROM riskwatch.alert_history)"
    ).result_rows[0]
    print(
        f"  seeded {n[0]:,} alert revisions and {n[1]:,} history rows in {time.monotonic() - t0:.0f}s", file=sys.stderr
    )


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _server_ms(r) -> float:
    h = r.headers.get("server-timing", "")
    for part in h.split(","):
        if "dur=" in part:
            return float(part.split("dur=")[1])
    return float("nan")


def run(settings: Settings, alerts: int, history: int, requests: int, out: Path) -> dict:
    import httpx

    from riskwatch.domain.catalog import load_catalog
    from riskwatch.tools.runner import WorkerProcess, settings_env, wait_for
    from streams.runtime.topics import delete_topics, ensure_topics
    from web.users import UserStore

    tmp = Path(tempfile.mkdtemp(prefix="rw-webbench-"))
    run_id = uuid.uuid4().hex[:8]
    import socket

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    s = settings.model_copy(
        update=dict(
            clickhouse_url=f"chdb://{tmp / 'ch'}",
            topic_prefix=f"webbench{run_id}.",
            app_id=f"riskwatch-webbench-{run_id}",
            web_port=port(),
            workbench_port=port(),
            workbench_dir=tmp / "web",
            state_dir=tmp / "state",
        )
    )
    env = {**os.environ, **settings_env(s)}
    web = worker = None
    try:
        print(f"seeding {alerts:,} alerts and {history:,} history rows into {tmp / 'ch'} ...", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from riskwatch.tools.bench.web import seed; seed({s.clickhouse_url!r}, {alerts}, {history})",
            ],
            env=env,
            check=True,
        )
        ensure_topics(s, load_catalog(s.catalog_path))
        print("starting the worker and the workbench ...", file=sys.stderr)
        worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
        store = UserStore(s.workbench_dir / "users.json")
        pw = store.add("amr", dept="amr", name="张三")[1]
        with open(tmp / "web.log", "ab") as web_log:
            web = subprocess.Popen(
                [sys.executable, "-m", "riskwatch.cli.main", "web", "run"],
                env=env,
                stdout=web_log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{s.workbench_port}"
        wait_for(lambda: _up(url), 60, "the workbench")
        c = httpx.Client(base_url=url, timeout=60)
        import re

        m = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
        assert m is not None, "the login page has no CSRF token"
        tok = m.group(1)
        r = c.post("/login", data={"username": "amr", "password": pw, "csrf_token": tok})
        assert r.status_code == 303, f"login failed: {r.status_code}"
        rows = worker.query(
            "SELECT alert_id FROM riskwatch.alerts FINAL WHERE has(departments, 'amr') "
            "ORDER BY cityHash64(alert_id) LIMIT 1000"
        )
        assert rows is not None, "the worker does not answer /query"
        ids = [r["alert_id"] for r in rows]
        result: dict = {
            "alerts": alerts,
            "history_rows": history,
            "requests": requests,
            "note": "shared 2-core machine; server time from the app's Server-Timing header",
        }
        for name, paths in (
            ("inbox", ["/inbox"] * requests),
            ("alert_page", [f"/alerts/{ids[i % len(ids)]}" for i in range(requests)]),
        ):
            for p in paths[:5]:
                c.get(p)  # warm-up
            server, wall = [], []
            for p in paths:
                t = time.perf_counter()
                r = c.get(p)
                wall.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (p, r.status_code, r.text[:300])
                server.append(_server_ms(r))
            result[name] = {
                "server_ms_p50": round(_pct(server, 0.5), 1),
                "server_ms_p95": round(_pct(server, 0.95), 1),
                "wall_ms_p50": round(_pct(wall, 0.5), 1),
                "wall_ms_p95": round(_pct(wall, 0.95), 1),
            }
            print(
                f"  {name:<11} server p50 {result[name]['server_ms_p50']:>7.1f} ms  p95 "
                f"{result[name]['server_ms_p95']:>7.1f} ms"
                f"   (client wall p50 {result[name]['wall_ms_p50']:.1f} / p95 {result[name]['wall_ms_p95']:.1f} ms)",
                file=sys.stderr,
            )
        status = Path(f"/proc/{web.pid}/status").read_text()
        mem = {
            line.split(":")[0]: int(line.split()[1])
            for line in status.splitlines()
            if line.startswith(("VmRSS", "VmHWM"))
        }
        result["app_rss_mb"] = round(mem["VmRSS"] / 1024, 1)
        result["app_peak_rss_mb"] = round(mem["VmHWM"] / 1024, 1)
        print(f"  app RSS {result['app_rss_mb']} MB (peak {result['app_peak_rss_mb']} MB)", file=sys.stderr)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        return result
    finally:
        if web is not None:
            web.terminate()
            web.wait(20)
        if worker is not None:
            worker.stop()
        delete_topics(s, [s.topic_prefix, s.app_id + "-"])
        shutil.rmtree(tmp, ignore_errors=True)


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

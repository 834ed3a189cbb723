"""Attacks on the worker's query port, run against a real worker process (broker, worker, chDB).

* ``/query`` without the token, or with a wrong one: 401, nothing runs;
* with the token: ``INTO OUTFILE`` (plain, hidden by comments, after a second statement), file(),
  url(), remote() and writes are refused (403, one line) and no file is written;
* Faust's ``/table/`` and ``/router/`` views: 404;
* the token file is 0600; the port binds loopback by default; compose does not publish it; the
  ClickHouse server's ``analyst`` profile carries the same limits as riskwatch's own reads.

Unit tests of the gate itself: ``tests/test_query_gate.py``.
"""

from __future__ import annotations

import stat
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
import yaml

from riskwatch.settings import Settings
from sinks.clickhouse import READ_SETTINGS
from sinks.query_token import auth_headers, ensure_token, token_path

ROOT = Path(__file__).resolve().parents[1]


def _http(settings: Settings, path: str, sql: str | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    req = urllib.request.Request(
        url,
        data=sql.encode() if sql is not None else None,
        headers=headers or {},
        method="POST" if sql is not None else "GET",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    try:
        return code, orjson.loads(body)
    except orjson.JSONDecodeError:
        return code, body.decode(errors="replace")


def test_token_file_is_private_and_stable(tmp_path):
    p = token_path(Settings(state_dir=tmp_path / "state", _env_file=None))
    assert p == tmp_path / "query.token"
    t = ensure_token(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and len(t) >= 40
    p.chmod(0o644)
    assert ensure_token(p) == t and stat.S_IMODE(p.stat().st_mode) == 0o600


def test_query_port_binds_loopback_and_compose_does_not_publish_it():
    assert Settings(_env_file=None).web_host == "127.0.0.1"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        if name.startswith("worker"):
            assert not svc.get("ports"), f"{name} publishes {svc.get('ports')}"


def test_analyst_profile_has_the_read_limits():
    root = ET.parse(ROOT / "deploy/clickhouse/users.d/riskwatch.xml").getroot()
    profile = root.find("profiles/analyst")
    for k, v in READ_SETTINGS.items():
        if k == "max_threads":  # a server has cores of its own; the limit is for the embedded worker's host
            continue
        assert profile.findtext(k) == str(v), k


@pytest.fixture(scope="module")
def worker_port(broker, tmp_path_factory):
    import uuid

    from tests.conftest import Pipeline, free_port

    tmp = tmp_path_factory.mktemp("security")
    run = uuid.uuid4().hex[:8]
    s = broker.model_copy(
        update=dict(
            topic_prefix=f"t{run}.",
            app_id=f"riskwatch-test-{run}",
            web_port=free_port(),
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            partitions=1,
        )
    )
    p = Pipeline(s, tmp)
    p.start_worker()
    yield s, tmp
    p.close()
    from streams.runtime.topics import delete_topics

    delete_topics(s, [s.topic_prefix, s.app_id + "-"])


def test_query_without_token_is_401(worker_port):
    s, _ = worker_port
    assert stat.S_IMODE(token_path(s).stat().st_mode) == 0o600
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        code, body = _http(s, "/query", "SELECT 1", headers)
        assert code == 401 and "token" in body["error"], (headers, code, body)
    code, _ = _http(s, "/query?sql=SELECT%201")
    assert code == 401
    code, body = _http(s, "/query", "SELECT 1 AS one", auth_headers(s))
    assert code == 200 and body["rows"] == [[1]]


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT 1 INTO OUTFILE '{out}/a.csv'", "INTO OUTFILE is not allowed"),
        ("SELECT 1 /* x */ INTO -- y\n OUTFILE '{out}/b.csv' FORMAT CSV", "INTO OUTFILE is not allowed"),
        ("SELECT 1; SELECT 2 INTO OUTFILE '{out}/c.csv'", "Multi-statements are not allowed"),
        ("EXPLAIN SELECT 1 INTO OUTFILE '{out}/d.csv'", "INTO OUTFILE is not allowed"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file() is not allowed"),
        ("SELECT file('/etc/hostname')", "file() is not allowed"),
        ("SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a Int')", "table function url() is not allowed"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote() is not allowed"),
        ("INSERT INTO FUNCTION file('{out}/e.csv') SELECT 1", "INSERT is not a read"),
        ("DROP TABLE riskwatch.alerts", "is not a read"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS in the statement are not allowed"),
    ],
)
def test_token_holder_cannot_write_files_or_reach_out(worker_port, sql, expected):
    s, tmp = worker_port
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    code, body = _http(s, "/query", sql.replace("{out}", str(out)), auth_headers(s))
    assert code == 403 and expected in body["error"] and "\n" not in body["error"], body
    assert list(out.iterdir()) == []
    code, body = _http(s, "/query", "EXISTS TABLE riskwatch.alerts", auth_headers(s))
    assert body["rows"] == [[1]]


def test_faust_table_and_router_views_are_off(worker_port):
    s, _ = worker_port
    for path in ("/table/", "/router/", "/table/entities/", "/router/entities/key/"):
        code, _ = _http(s, path)
        assert code == 404, path
    code, body = _http(s, "/identity")
    assert code == 200 and set(body) == {"service", "app_id", "data"}


def test_riskwatch_creates_private_files(tmp_path):
    """What a riskwatch command creates is the operator account's only, whatever the login's umask."""
    import os
    import subprocess
    import sys

    out = tmp_path / "dashboards"
    old = os.umask(0o022)
    try:
        subprocess.run(
            [sys.executable, "-m", "riskwatch.cli.main", "grafana", "build", "--out", str(out)],
            check=True,
            capture_output=True,
        )
    finally:
        os.umask(old)
    made = [out, *out.rglob("*")]
    assert made and all(p.stat().st_mode & 0o077 == 0 for p in made), [oct(p.stat().st_mode) for p in made]

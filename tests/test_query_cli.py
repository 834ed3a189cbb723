"""`riskwatch query` and the worker's web port: it trusts the server on the port only when that
server's ``GET /identity`` names this configuration's worker; ClickHouse's refusals are one line.

Foreign servers are real HTTP servers on 127.0.0.1 (another web app; another riskwatch worker's
identity). The query runs as a real `riskwatch query` process against a real chDB directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def _serve(status: int, body: bytes, content_type: str = "application/json"):
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            seen.append(f"{self.command} {self.path}")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, seen


def _query(sql: str, port: int, data_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    env.update(RISKWATCH_WEB_PORT=str(port), RISKWATCH_CLICKHOUSE_URL=f"chdb://{data_dir}", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "query", sql],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir.parent,
        timeout=120,
    )


@pytest.fixture
def foreign_app():
    srv, seen = _serve(404, b"<html><body>404: Not Found</body></html>", "text/html")
    yield srv, seen
    srv.shutdown()


def test_foreign_web_app_on_the_port_is_not_taken_for_the_worker(foreign_app, tmp_path):
    srv, seen = foreign_app
    r = _query("SELECT '舞泉镇' AS township, 3 AS n", srv.server_address[1], tmp_path / "clickhouse")
    assert r.returncode == 0, r.stderr
    assert "舞泉镇" in r.stdout and "(1 row)" in r.stdout
    assert "not a riskwatch worker" in r.stderr and "HTTP 404" in r.stderr
    assert seen == ["GET /identity"]  # asked who it is, never sent it the query


def test_another_riskwatch_worker_on_the_port_is_not_used(tmp_path):
    other = {"service": "riskwatch-worker", "app_id": "riskwatch-other", "data": "chdb:///elsewhere/clickhouse"}
    srv, seen = _serve(200, json.dumps(other).encode())
    try:
        r = _query("SELECT 1 AS one", srv.server_address[1], tmp_path / "clickhouse")
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stderr
    assert "another riskwatch worker (app id riskwatch-other" in r.stderr
    assert seen == ["GET /identity"]


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT * FROM file('/etc/passwd')", "refused: table function file() is not allowed"),
        ("SELECT * FROM riskwatch.no_such_table", "UNKNOWN_"),
        ("INSERT INTO t VALUES (1)", "refused: INSERT is not a read"),
    ],
)
def test_refusals_and_engine_errors_are_one_line(sql, expected, tmp_path):
    r = _query(sql, free_port(), tmp_path / "clickhouse")  # nothing listens: the engine is opened directly
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riskwatch query: ") and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "│" not in r.stderr


def _query_as(settings, sql: str, cwd: Path) -> subprocess.CompletedProcess:
    from riskwatch.tools.runner import settings_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    env.update(settings_env(settings), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "query", sql],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_this_worker_is_recognised_and_answers(pipeline):
    """A real worker: its /identity matches, the query goes through it (it owns the chDB directory),
    its engine errors come back as one line; a configuration with another app id is told so."""
    from riskwatch.tools.runner import WebPortTaken, identify_worker

    pipeline.start_worker()
    s = pipeline.settings
    assert identify_worker(s) is True
    r = _query_as(s, "SELECT '舞泉镇' AS township, count() AS n FROM riskwatch.alerts", Path.cwd())
    assert r.returncode == 0 and "舞泉镇" in r.stdout and r.stderr == "", r.stderr
    r = _query_as(s, "SELECT * FROM file('/etc/passwd')", Path.cwd())
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "refused: table function file()" in lines[0], r.stderr
    other = s.model_copy(update={"app_id": s.app_id + "-other"})
    with pytest.raises(WebPortTaken, match="another riskwatch worker"):
        identify_worker(other)

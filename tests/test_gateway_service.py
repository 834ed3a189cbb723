"""``riskwatch gateway|web start|status|stop`` (riskwatch/tools/service.py behind both): each message
of the cycle stopped → start → running → start again (reused) → stop → stopped, a stale pid file,
and a port held by someone else, checked word for word through the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from riskwatch.settings import Settings
from riskwatch.tools.runner import settings_env
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {  # command → (the name in messages, settings of its directory, its pid/log file stem, extra on running)
    "gateway": ("the gateway", "gateway_dir", "gateway", " \\(API docs: {url}/docs\\)"),
    "web": ("the workbench", "workbench_dir", "web", ""),
}
PORT_ENV = {"gateway": "RISKWATCH_GATEWAY_PORT", "web": "RISKWATCH_WORKBENCH_PORT"}
OURS = {"gateway": "our gateway", "web": "our app"}


def _cli(s: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("cmd", list(SERVICES))
def test_start_status_stop_say_the_same_for_both_services(broker, tmp_path, cmd):
    name, dir_field, stem, extra = SERVICES[cmd]
    port = free_port()
    port_field = "gateway_port" if cmd == "gateway" else "workbench_port"
    s = broker.model_copy(update={dir_field: tmp_path / stem, port_field: port, "topic_prefix": f"sv{port}."})
    d = (tmp_path / stem).resolve()
    url = f"http://127.0.0.1:{port}"
    pid_file, log_file = d / f"{stem}.pid", d / f"{stem}.log"
    e = re.escape
    try:
        assert _cli(s, cmd, "status").stdout.strip() == "stopped"
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text("999999999")
        stale = f"stale: pid file {pid_file} names a process that is gone; `riskwatch {cmd} start` cleans it"
        assert _cli(s, cmd, "status").stdout.strip() == stale

        r = _cli(s, cmd, "start")
        assert r.returncode == 0, r.stderr
        pid = int(pid_file.read_text())
        assert re.fullmatch(e(f"starting {name} (pid {pid}) at {url}; log: {log_file}"), r.stderr.strip()), r.stderr
        assert r.stdout.strip() == f"running (pid {pid}) at {url}"
        running = e(f"running (pid {pid}) at {url}") + extra.format(url=e(url)) + e(f"; log: {log_file}")
        assert re.fullmatch(running, _cli(s, cmd, "status").stdout.strip())
        assert _cli(s, cmd, "start").stdout.strip() == f"already running (pid {pid}) at {url}; reusing it"

        other = tmp_path / "other"  # a second instance on the same port: the port answers, not from its pid
        s2 = s.model_copy(update={dir_field: other})
        r = _cli(s2, cmd, "start")
        assert r.returncode == 1
        assert r.stderr.strip() == (
            f"riskwatch {cmd} start: {url} answers but not from {OURS[cmd]}; stop it or set {PORT_ENV[cmd]}"
        )

        stopped = "workbench" if cmd == "web" else "gateway"
        assert _cli(s, cmd, "stop").stdout.strip() == f"{stopped} stopped (pid {pid})"
        assert not pid_file.exists()
        assert _cli(s, cmd, "stop").stdout.strip() == "was not running"
        assert _cli(s, cmd, "status").stdout.strip() == "stopped"
    finally:
        _cli(s, cmd, "stop")

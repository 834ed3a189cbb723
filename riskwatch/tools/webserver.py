"""The workbench as a background process, like the local broker: ``riskwatch web start|stop|status``.

* start: launch ``riskwatch web run`` detached (own session), pid in ``<workbench_dir>/web.pid``,
  output in ``<workbench_dir>/web.log``; wait until ``/healthz`` answers. A running app is reused.
* stop: SIGTERM (SIGKILL after a timeout) to the app and, if ``make demo`` left one running for
  exploring, to the worker named in ``<workbench_dir>/worker.pid``.

The start/stop/status logic is :class:`riskwatch.tools.service.Service`, shared with the gateway.

>>> import tempfile
>>> from riskwatch.settings import Settings
>>> WebServer(Settings(_env_file=None, workbench_dir=tempfile.mkdtemp())).status()
'stopped'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from riskwatch.tools.pidfile import live_pid
from riskwatch.tools.service import Service, ServiceError


class WebError(ServiceError):
    pass


@dataclass
class WebServer(Service):
    command = "web"
    stem = "web"
    title = "the workbench"
    short = "workbench"
    ours = "our app"
    port_env = "RISKWATCH_WORKBENCH_PORT"
    error = WebError

    @property
    def dir(self) -> Path:
        return Path(self.settings.workbench_dir).resolve()

    @property
    def worker_pid_file(self) -> Path:
        return self.dir / "worker.pid"

    @property
    def url(self) -> str:
        return f"http://{self.settings.workbench_host}:{self.settings.workbench_port}"

    def pid_files(self, timeout: float) -> list[tuple[str, Path, float]]:
        return [("workbench", self.pid_file, timeout), ("demo worker", self.worker_pid_file, 90.0)]

    def note(self) -> str:
        worker = live_pid(self.worker_pid_file)
        return f"; demo worker pid {worker}" if worker else ""

    def running_note(self) -> str:
        return self.note()

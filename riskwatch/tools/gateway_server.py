"""The ingest gateway as a background process, like the workbench: ``riskwatch gateway start|stop|status``.

* start: launch ``riskwatch gateway run`` detached (own session), pid in ``<gateway_dir>/gateway.pid``,
  output in ``<gateway_dir>/gateway.log``; wait until ``/healthz`` answers. A running gateway is reused.
* stop: SIGTERM (SIGKILL after a timeout).

The start/stop/status logic is :class:`riskwatch.tools.service.Service`, shared with the workbench.

>>> import tempfile
>>> from riskwatch.settings import Settings
>>> GatewayServer(Settings(_env_file=None, gateway_dir=tempfile.mkdtemp())).status()
'stopped'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from riskwatch.tools.service import Service, ServiceError


class GatewayError(ServiceError):
    pass


@dataclass
class GatewayServer(Service):
    command = "gateway"
    stem = "gateway"
    title = "the gateway"
    short = "gateway"
    ours = "our gateway"
    port_env = "RISKWATCH_GATEWAY_PORT"
    error = GatewayError

    @property
    def dir(self) -> Path:
        return Path(self.settings.gateway_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def running_note(self) -> str:
        return f" (API docs: {self.url}/docs)"

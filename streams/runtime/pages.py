"""The worker's web pages on ``settings.web_port``: ``/identity``, ``/query`` and ``/metrics``.

``GET /identity`` says which worker this is (service, app id, data location:
:meth:`riskwatch.settings.Settings.worker_identity`); ``riskwatch query`` sends its SQL only to a
worker whose identity matches its own settings. ``GET/POST /query`` runs read-only SQL: how
analysts (``riskwatch query``) and the workbench read the embedded chDB, which only one process
can open; an error is one line. ``/metrics`` is Prometheus text.
"""

from __future__ import annotations

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.query import QueryRefused, engine_error_line
from streams.runtime.worker import Worker


def register(w: Worker) -> None:
    writer = w.writer
    identity = w.settings.worker_identity()

    @w.app.page("/identity")
    async def identity_view(web, request):
        return web.json(identity)

    @w.app.page("/query")
    class QueryView(faust.web.View):
        """Read-only SQL for analysts: GET ?sql=... or POST the statement as the body."""

        async def _run(self, sql: str):
            try:
                cols, rows = await writer.aquery(sql)
            except QueryRefused as e:
                return self.json({"error": f"refused: {e}"}, status=403)
            except Exception as e:  # noqa: BLE001 — report the engine's message to the analyst
                return self.json({"error": engine_error_line(e)}, status=400)
            return self.bytes(orjson.dumps({"columns": cols, "rows": rows}, default=str),
                              content_type="application/json")

        async def get(self, request):
            return await self._run(request.query.get("sql", ""))

        async def post(self, request):
            return await self._run((await request.read()).decode("utf-8", "replace"))

    @w.app.page("/metrics")
    async def metrics_view(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

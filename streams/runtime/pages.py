"""The worker's web pages on ``settings.web_port``: ``/identity``, ``/query`` and ``/metrics``.

``GET /identity`` says which worker this is (service, app id, data location:
:meth:`riskwatch.settings.Settings.worker_identity`); ``riskwatch query`` sends its SQL only to a
worker whose identity matches its own settings. ``GET/POST /query`` runs read-only SQL: how
analysts (``riskwatch query``) and the workbench read the embedded chDB, which only one process
can open; it asks for the token of :mod:`sinks.query_token` (401 without it), the gate of
:mod:`sinks.query` decides, and an error is one line. ``/metrics`` is Prometheus text. Faust's own
``/table/`` and ``/router/`` views are switched off (they would read the state tables unguarded).
"""

from __future__ import annotations

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks import query_token
from sinks.query import QueryRefused, engine_error_line
from streams.runtime.worker import Worker


def register(w: Worker) -> None:
    writer = w.writer
    identity = w.settings.worker_identity()
    token = query_token.ensure_token(query_token.token_path(w.settings))
    query_token.switch_off_faust_views(w.app)

    @w.app.page("/identity")
    async def identity_view(web, request):
        return web.json(identity)

    @w.app.page("/query")
    class QueryView(faust.web.View):
        """Read-only SQL for analysts: GET ?sql=... or POST the statement as the body."""

        async def _run(self, request, sql: str):
            if not query_token.authorized(request.headers.get("Authorization"), token):
                return self.json({"error": query_token.UNAUTHORIZED}, status=401)
            try:
                cols, rows = await writer.aquery(sql)
            except QueryRefused as e:
                return self.json({"error": f"refused: {e}"}, status=403)
            except Exception as e:  # noqa: BLE001 — report the engine's message to the analyst
                return self.json({"error": engine_error_line(e)}, status=400)
            return self.bytes(
                orjson.dumps({"columns": cols, "rows": rows}, default=str), content_type="application/json"
            )

        async def get(self, request):
            return await self._run(request, request.query.get("sql", ""))

        async def post(self, request):
            return await self._run(request, (await request.read()).decode("utf-8", "replace"))

    @w.app.page("/metrics")
    async def metrics_view(web, request):
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

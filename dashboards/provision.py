"""Push the riskwatch ClickHouse datasource and dashboards to a running Grafana (grafana-client).

Idempotent: the datasource is created or updated by uid, each dashboard is saved by uid with
``overwrite: true`` into the folder ``riskwatch`` (created if missing). Alternative without the
API: the file provisioning in ``dashboards/provisioning``.
"""

from __future__ import annotations

import logging
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.build import DASHBOARDS, DS_TYPE, DS_UID, to_dict

log = logging.getLogger(__name__)
FOLDER_UID = "riskwatch"
FOLDER_TITLE = "三品一特风险监测"


def datasource_body(
    host: str = "localhost",
    port: int = 8123,
    protocol: str = "http",
    username: str = "default",
    password: str = "",
    database: str = "riskwatch",
) -> dict[str, Any]:
    return {
        "name": "riskwatch ClickHouse",
        "uid": DS_UID,
        "type": DS_TYPE,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": host,
            "port": port,
            "protocol": protocol,
            "secure": False,
            "username": username,
            "defaultDatabase": database,
        },
        "secureJsonData": {"password": password},
    }


def _not_found(e: GrafanaClientError) -> bool:
    return getattr(e, "status_code", None) == 404


def ensure_datasource(api: GrafanaApi, body: dict[str, Any]) -> str:
    try:
        api.datasource.get_datasource_by_uid(body["uid"])
    except GrafanaClientError as e:
        if not _not_found(e):
            raise
        api.datasource.create_datasource(body)
        return "created"
    api.datasource.update_datasource_by_uid(body["uid"], body)
    return "updated"


def ensure_folder(api: GrafanaApi) -> str:
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as e:
        if not _not_found(e):
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    return FOLDER_UID


def provision(
    url: str, token: str, *, datasource: dict[str, Any] | None = None, api: GrafanaApi | None = None
) -> dict[str, str]:
    """Create/update the datasource and every dashboard; return ``{uid: result}``."""
    api = api or GrafanaApi.from_url(url, credential=token)
    out = {DS_UID: ensure_datasource(api, datasource or datasource_body())}
    folder = ensure_folder(api)
    for uid, make in DASHBOARDS.items():
        res = api.dashboard.update_dashboard(
            {
                "dashboard": {**to_dict(make()), "id": None},
                "folderUid": folder,
                "overwrite": True,
                "message": "riskwatch grafana provision",
            }
        )
        out[uid] = str(res.get("status", "success")) if isinstance(res, dict) else "success"
        log.info("Grafana dashboard %s: %s", uid, out[uid])
    return out

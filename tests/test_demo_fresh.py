"""`riskwatch demo --fresh`: deletes this checkout's local data, nothing else, and never a server's."""

from __future__ import annotations

import pytest

from riskwatch.settings import Settings
from riskwatch.tools.demo import DemoError, fresh_start


def _settings(tmp_path, **kw) -> Settings:
    return Settings(
        _env_file=None,
        kafka_data_dir=tmp_path / "kafka",
        clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
        state_dir=tmp_path / "state",
        alertmanager_data_dir=tmp_path / "alertmanager",
        workbench_dir=tmp_path / "web",
        gateway_dir=tmp_path / "gateway",  # the demo's edges are stopped too: never another checkout's
        mqtt_data_dir=tmp_path / "mqtt",
        **kw,
    )


def test_fresh_start_deletes_the_local_broker_clickhouse_state_and_alertmanager_data(tmp_path):
    s = _settings(tmp_path)
    gone = ["kafka", "clickhouse", "state", "alertmanager"]
    for d in [*gone, "web", "notify"]:
        (tmp_path / d).mkdir()
        (tmp_path / d / "data").write_text("x")
    said = fresh_start(s)
    assert [d for d in gone if (tmp_path / d).exists()] == []
    assert (tmp_path / "web" / "data").exists()  # the workbench's accounts and session secret stay
    assert len([x for x in said if x.startswith("deleted")]) == 4, said


def test_fresh_start_refuses_a_remote_broker_or_a_clickhouse_server(tmp_path):
    (tmp_path / "state").mkdir()
    for kw in (
        {"kafka_bootstrap": "kafka.example:9092"},
        {"clickhouse_url": "https://writer:pw@ch.example:8443/riskwatch"},
    ):
        s = _settings(tmp_path).model_copy(update=kw)
        with pytest.raises(DemoError, match="local data only"):
            fresh_start(s)
    assert (tmp_path / "state").exists()

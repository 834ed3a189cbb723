"""Dashboards: committed JSON == generated, schema-valid, and every panel's SQL runs on chDB.

Grafana cannot run here. Panel SQL is expanded like the grafana-clickhouse-datasource plugin
would (dashboards.sqlcheck) and run read-only on a chDB loaded with sample data
(riskwatch.tools.sample_data: one simulated day + synthetic alerts), after sinks.migrations.migrate and
sinks.migrations_mv.migrate_views.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from dashboards import build as B
from dashboards.sqlcheck import expand
from riskwatch.tools.sample_data import load_sample
from sinks import migrations, migrations_mv
from sinks.clickhouse import READ_SETTINGS, make_client

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "grafana-jsonschema"
if not SCHEMAS.exists():  # repo checked out elsewhere: the brief's absolute path
    SCHEMAS = Path("/work/shared/data/grafana-jsonschema")
DASHBOARDS = B.load_all()
VARIABLES = {"item": "1", "department": "amr"}
NUMERIC = ("Int", "UInt", "Float", "Decimal")
# panels allowed to be empty on the sample data (none at the moment)
MAY_BE_EMPTY: set[tuple[str, str]] = set()


def _base(type_name: str) -> str:
    t = type_name
    for wrapper in ("Nullable(", "LowCardinality("):
        while t.startswith(wrapper):
            t = t[len(wrapper) : -1]
    return t


def _numeric(t: str) -> bool:
    return _base(t).startswith(NUMERIC)


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text(encoding="utf-8"))


def _panels():
    for uid, d in DASHBOARDS.items():
        for p in d["panels"]:
            yield uid, p


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    url = f"chdb://{tmp_path_factory.mktemp('dash') / 'ch'}"
    now = datetime.now(UTC)
    counts = load_sample(url, now=now)
    print(f"\nsample rows: {counts}")
    c = make_client(url)
    yield c, now
    c.close()


def test_committed_json_is_generated(tmp_path):
    B.build(tmp_path)
    for uid in B.DASHBOARDS:
        committed = (B.JSON_DIR / f"{uid}.json").read_text(encoding="utf-8")
        assert committed == (tmp_path / f"{uid}.json").read_text(encoding="utf-8"), (
            f"{uid}.json is stale: run `riskwatch grafana build`"
        )


@pytest.mark.parametrize("uid", list(DASHBOARDS))
def test_dashboard_schema_valid(uid):
    d = DASHBOARDS[uid]
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(_schema("dashboard")).iter_errors(d)
    ]
    checked = 0
    for p in d["panels"]:
        f = SCHEMAS / f"{p['type']}.jsonschema.json"
        if not f.exists():
            continue
        sch = _schema(p["type"])
        for part, value in (
            ("Options", p.get("options", {})),
            ("FieldConfig", p.get("fieldConfig", {}).get("defaults", {}).get("custom", {})),
        ):
            if part in sch["definitions"]:
                v = jsonschema.Draft7Validator({**sch, "$ref": f"#/definitions/{part}"})
                errors += [
                    f"{p['title']} {part} {list(e.absolute_path)}: {e.message[:200]}" for e in v.iter_errors(value)
                ]
                checked += 1
    assert not errors, "\n".join(errors)
    assert checked > 0
    print(f"\n[schema] {uid}: {len(d['panels'])} panels valid, {checked} options/custom parts checked")


def test_dashboard_basics():
    assert set(DASHBOARDS) == {"riskwatch-overview", "riskwatch-item", "riskwatch-department", "riskwatch-pipeline"}
    assert DASHBOARDS["riskwatch-overview"]["refresh"] == "10s"
    assert [v["name"] for v in DASHBOARDS["riskwatch-item"]["templating"]["list"]] == ["item"]
    assert [v["name"] for v in DASHBOARDS["riskwatch-department"]["templating"]["list"]] == ["department"]
    types = {p["type"] for p in DASHBOARDS["riskwatch-overview"]["panels"]}
    assert {"geomap", "table", "stat", "barchart", "gauge", "timeseries"} <= types
    for uid, p in _panels():
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (uid, p["title"])
        for t in p.get("targets", []):
            assert t["datasource"] == {"type": B.DS_TYPE, "uid": B.DS_UID}
            assert t["editorType"] == "sql" and t["format"] in (0, 1)
            assert (t["format"] == 0) == (p["type"] == "timeseries")


@pytest.mark.parametrize("uid", ["riskwatch-item", "riskwatch-department"])
def test_variable_queries_run(ch, uid):
    c, _ = ch
    for v in DASHBOARDS[uid]["templating"]["list"]:
        res = c.query(v["query"], settings=READ_SETTINGS)
        assert res.column_names == ("__value", "__text") and res.result_rows
        assert VARIABLES[v["name"]] in [r[0] for r in res.result_rows]


@pytest.mark.parametrize("uid,title", [(u, p["title"]) for u, p in _panels() if p.get("targets")])
def test_panel_sql_runs(ch, uid, title):
    c, now = ch
    p = next(p for p in DASHBOARDS[uid]["panels"] if p["title"] == title)
    for t in p["targets"]:
        sql = expand(t["rawSql"], now - timedelta(days=2), now + timedelta(minutes=5), VARIABLES)
        res = c.query(sql, settings=READ_SETTINGS)
        names, types = res.column_names, [ct.name for ct in res.column_types]
        print(f"\n[panel] {uid} / {p['type']} / {title}: {len(res.result_rows)} rows")
        if (uid, title) not in MAY_BE_EMPTY:
            assert res.result_rows, f"{uid} / {title}: no rows on the sample data"
        if p["type"] == "timeseries":
            assert _base(types[0]).startswith("DateTime"), types
            assert len(types) > 1 and all(_numeric(x) for x in types[1:]), list(zip(names, types, strict=True))
        elif p["type"] in ("stat", "gauge"):
            assert types and all(_numeric(x) for x in types), list(zip(names, types, strict=True))
        elif p["type"] == "geomap":
            assert {"latitude", "longitude"} <= set(names)
            assert any(_numeric(x) for n, x in zip(names, types, strict=True) if n not in ("latitude", "longitude"))
            assert len(res.result_rows) == len(B.townships())
        elif p["type"] == "barchart":
            assert p["options"]["xField"] in names
            assert any(_numeric(x) for x in types)


def test_views_idempotent_and_filled(ch):
    c, _ = ch
    migrations.migrate(c, "default")
    migrations_mv.migrate_views(c, "default")  # second run: no error, nothing changes
    for table in migrations_mv.TARGETS:
        assert c.query(f"SELECT count() FROM {table}").result_rows[0][0] > 0, table
    opened = c.query("SELECT sum(alerts) FROM agg_alerts_opened_hourly").result_rows[0][0]
    # one count per receiving department of each alert (the sample keeps departments across revisions;
    # revision-1 rows themselves may already be replaced: optimize_on_insert collapses an insert block)
    expected = c.query("SELECT sum(length(departments)) FROM alerts FINAL").result_rows[0][0]
    assert opened == expected
    ev = c.query("SELECT sum(events) FROM agg_events_hourly WHERE kind = 'sensor'").result_rows[0][0]
    n = c.query("SELECT count() FROM events_sensor FINAL").result_rows[0][0]
    assert n <= ev <= n * 1.01  # the views count inserted rows: the simulator's few duplicates count twice


def test_townships_match_simulator():
    import yaml

    from riskwatch.domain.catalog import DATA_DIR

    sim = {
        t["name"]: (t["lat"], t["lon"])
        for t in yaml.safe_load((DATA_DIR / "simulator.yaml").read_text(encoding="utf-8"))["county"]["townships"]
    }
    ours = {t["name"]: (t["lat"], t["lon"]) for t in B.townships()}
    assert ours == sim and len(ours) == 14


def test_sqlcheck_expand():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = expand(
        "SELECT $__timeInterval(x) FROM t WHERE $__timeFilter(x) AND d = '${department}' AND i = $item",
        t0,
        t0 + timedelta(hours=1),
        {"department": "amr", "item": "3"},
    )
    assert "toStartOfInterval(toDateTime(x), INTERVAL 60 second)" in out
    assert (
        "x >= toDateTime64('2026-01-01 00:00:00.000', 3, 'UTC') AND x <= toDateTime64('2026-01-01 01:00:00.000', 3, "
        "'UTC')" in out
    )
    assert "d = 'amr' AND i = 3" in out
    with pytest.raises(ValueError):
        expand("SELECT $__unknown", t0, t0)


def test_provision_is_idempotent_with_fake_grafana():
    from grafana_client.client import GrafanaClientError

    from dashboards.provision import provision

    class NotFound(GrafanaClientError):
        def __init__(self):
            super().__init__(404, None, "Not found")

    class Fake:
        def __init__(self):
            self.ds, self.folders, self.dash = {}, {}, {}
            fake = self

            class DS:
                def get_datasource_by_uid(self, uid):
                    if uid not in fake.ds:
                        raise NotFound()
                    return fake.ds[uid]

                def create_datasource(self, body):
                    fake.ds[body["uid"]] = body

                def update_datasource_by_uid(self, uid, body):
                    fake.ds[uid] = body

            class Folder:
                def get_folder(self, uid):
                    if uid not in fake.folders:
                        raise NotFound()

                def create_folder(self, title, uid=None):
                    fake.folders[uid] = title

            class Dash:
                def update_dashboard(self, body):
                    assert body["overwrite"] is True
                    fake.dash[body["dashboard"]["uid"]] = body
                    return {"status": "success"}

            self.datasource, self.folder, self.dashboard = DS(), Folder(), Dash()

    api = Fake()
    first = provision("http://grafana", "t", api=api)
    second = provision("http://grafana", "t", api=api)
    assert first[B.DS_UID] == "created" and second[B.DS_UID] == "updated"
    assert set(api.dash) == set(B.DASHBOARDS) and len(api.ds) == 1 and len(api.folders) == 1


def test_backfill_views_rebuilds_the_same_aggregates(ch):
    c, _ = ch
    q = (
        "SELECT (SELECT sum(alerts) FROM agg_alerts_opened_hourly), (SELECT count() FROM (SELECT hour, kind FROM "
        "agg_events_hourly GROUP BY hour, kind)),"
        " (SELECT sum(complaints) FROM agg_township_hourly), (SELECT sum(video_detections) FROM agg_township_hourly)"
    )
    before = c.query(q).result_rows[0]
    migrations_mv.backfill_views(c, "default")
    after = c.query(q).result_rows[0]
    assert after[0] == before[0] and after[1] == before[1] and after[2] <= before[2] and after[3] <= before[3]
    assert (
        c.query("SELECT sum(events) FROM agg_events_hourly WHERE kind = 'sensor'").result_rows[0][0]
        == c.query("SELECT count() FROM events_sensor FINAL").result_rows[0][0]
    )

"""Materialized views for the Grafana dashboards (``dashboards/``): small hourly aggregates.

Called after :func:`sinks.migrations.migrate`::

    migrations.migrate(client, db)
    migrations_mv.migrate_views(client, db)

Every statement is ``CREATE ... IF NOT EXISTS``, so running it again is harmless. Each view
writes ``TO`` an explicit ``SummingMergeTree`` target table (query with ``sum(...)`` and
``GROUP BY``: rows of one key are only summed at merge time). A view sees only rows inserted
after it exists: run :func:`backfill_views` once on a database that already holds data.

Counts are of inserted rows: a Kafka replay that re-inserts an event (deduplicated by ``FINAL``
in the base tables) is counted again here. They drive dashboards; exact figures come from the
base tables with ``FINAL`` (docs/analyst-queries.sql).

* ``agg_alerts_opened_hourly`` — alerts opened (revision 1) per hour × item × department ×
  township × level; one row per receiving department (``ARRAY JOIN departments``).
* ``agg_events_hourly`` — input events per hour × kind (registry, sensor, video, complaint,
  inspection, feedback), by ``occurred_at``.
* ``agg_township_hourly`` — complaints and video detections per hour × township. Complaints use
  their own township, else the registry's; video detections the registry's (``registry`` at
  insert time: an entity registered after its detection lands on township '').
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import check_database_name

HOUR = "DateTime('Asia/Shanghai')"

# entity_id -> township of the latest registry version (read at insert time by the views)
_REGISTRY_TOWNSHIP = "(SELECT entity_id, argMax(township, version) AS township FROM {db}.registry GROUP BY entity_id)"

EVENT_KINDS: dict[str, str] = {
    "registry": "events_registry",
    "sensor": "events_sensor",
    "video": "events_video",
    "complaint": "events_complaint",
    "inspection": "events_inspection",
    "feedback": "events_feedback",
}

STATEMENTS: tuple[str, ...] = (
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.agg_alerts_opened_hourly
(
    hour {HOUR} COMMENT 'toStartOfHour(first_seen)',
    item_id UInt16 COMMENT '0 when no item covers the entity kind',
    item_name LowCardinality(String),
    department LowCardinality(String) COMMENT 'One receiving department (alerts.departments)',
    township LowCardinality(String),
    level LowCardinality(String),
    alerts UInt64
)
ENGINE = SummingMergeTree(alerts)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, item_id, department, township, level, item_name)
COMMENT 'Alerts opened (revision 1) per hour x item x department x township x level; sum(alerts). Filled by agg_alerts_opened_hourly_mv.'
""",
    """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.agg_alerts_opened_hourly_mv TO {db}.agg_alerts_opened_hourly AS
SELECT toStartOfHour(first_seen) AS hour, ifNull(item_id, 0) AS item_id, item_name,
       department, township, level, toUInt64(1) AS alerts
FROM {db}.alerts
ARRAY JOIN departments AS department
WHERE revision = 1
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.agg_events_hourly
(
    hour {HOUR} COMMENT 'toStartOfHour(occurred_at)',
    kind LowCardinality(String) COMMENT 'registry | sensor | video | complaint | inspection | feedback',
    events UInt64
)
ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, kind)
COMMENT 'Input events per hour x kind (inserted rows, replays included); sum(events). Filled by agg_events_hourly_<kind>_mv.'
""",
    *(
        f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.agg_events_hourly_{kind}_mv TO {{db}}.agg_events_hourly AS
SELECT toStartOfHour(occurred_at) AS hour, '{kind}' AS kind, count() AS events
FROM {{db}}.{table}
GROUP BY hour
"""
        for kind, table in EVENT_KINDS.items()
    ),
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.agg_township_hourly
(
    hour {HOUR},
    township LowCardinality(String) COMMENT 'Empty when unknown',
    complaints UInt64,
    video_detections UInt64
)
ENGINE = SummingMergeTree((complaints, video_detections))
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, township)
COMMENT 'Complaints and AI video detections per hour x township; sum(). Filled by agg_township_hourly_*_mv.'
""",
    f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.agg_township_hourly_complaint_mv TO {{db}}.agg_township_hourly AS
SELECT toStartOfHour(c.occurred_at) AS hour,
       if(c.township != '', c.township, ifNull(r.township, '')) AS township,
       count() AS complaints, toUInt64(0) AS video_detections
FROM {{db}}.events_complaint AS c
LEFT JOIN {_REGISTRY_TOWNSHIP} AS r ON r.entity_id = c.entity_id
GROUP BY hour, township
SETTINGS join_use_nulls = 1
""",
    f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.agg_township_hourly_video_mv TO {{db}}.agg_township_hourly AS
SELECT toStartOfHour(v.occurred_at) AS hour, ifNull(r.township, '') AS township,
       toUInt64(0) AS complaints, count() AS video_detections
FROM {{db}}.events_video AS v
LEFT JOIN {_REGISTRY_TOWNSHIP} AS r ON r.entity_id = v.entity_id
GROUP BY hour, township
SETTINGS join_use_nulls = 1
""",
)

VIEWS = ("agg_alerts_opened_hourly_mv", *(f"agg_events_hourly_{k}_mv" for k in EVENT_KINDS),
         "agg_township_hourly_complaint_mv", "agg_township_hourly_video_mv")  # fmt: skip
TARGETS = ("agg_alerts_opened_hourly", "agg_events_hourly", "agg_township_hourly")


def migrate_views(client: Client, database: str = "riskwatch") -> None:
    """Create the aggregate tables and their materialized views if missing (idempotent)."""
    db = check_database_name(database)
    for sql in STATEMENTS:
        client.command(sql.format(db=db))


def backfill_views(client: Client, database: str = "riskwatch") -> None:
    """Rebuild the aggregate tables from the base tables (``FINAL``: duplicates counted once).

    For a database that held data before the views existed. Not atomic: run it while nothing
    is being written, or accept that rows inserted during the backfill may be counted twice.
    """
    db = check_database_name(database)
    for t in TARGETS:
        client.command(f"TRUNCATE TABLE IF EXISTS {db}.{t}")
    for sql in STATEMENTS:
        if "MATERIALIZED VIEW" not in sql:
            continue
        head, select = sql.split(" AS\n", 1)
        target = head.split(" TO ", 1)[1].strip()
        source_final = select
        # read the base tables with FINAL (duplicates once). For alerts: one row per alert
        # (its latest revision; first_seen does not change) instead of the revision-1 rows,
        # which a ReplacingMergeTree may already have replaced (optimize_on_insert / merges).
        source_final = source_final.replace("FROM {db}.alerts\nARRAY JOIN", "FROM {db}.alerts FINAL\nARRAY JOIN", 1)
        source_final = source_final.replace("WHERE revision = 1\n", "", 1)
        for table in EVENT_KINDS.values():
            marker = f"FROM {{db}}.{table}\n"
            if marker in source_final:
                source_final = source_final.replace(marker, f"FROM {{db}}.{table} FINAL\n", 1)
            marker = f"FROM {{db}}.{table} AS "
            if marker in source_final:
                alias = source_final.split(marker, 1)[1].split()[0]
                source_final = source_final.replace(marker + alias, f"FROM {{db}}.{table} AS {alias} FINAL", 1)
        client.command(f"INSERT INTO {target.format(db=db)} {source_final.format(db=db)}")

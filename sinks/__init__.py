"""ClickHouse side of riskwatch, all through clickhouse-connect (chDB embedded or HTTP server).

* :mod:`sinks.clickhouse` — ``make_client(url)``, ``INSERT_SETTINGS`` (async_insert=0), ``READ_SETTINGS``
* :mod:`sinks.migrations` — ``migrate(client, database)``: idempotent schema at start-up
* :mod:`sinks.rows` — pydantic models → row tuples, column lists per table
* :mod:`sinks.writer` — ``ClickHouseWriter``: batched, retried inserts on one dedicated thread
* :mod:`sinks.query` — read-only query gate and ``format_table``
"""

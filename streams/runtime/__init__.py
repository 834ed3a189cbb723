"""The Faust runtime: wires the engine (``streams/engine/``) to Kafka, the state store and ClickHouse.

Read in this order: ``app.py`` → ``worker.py`` → ``entity_agent.py`` → ``commit.py``; the rest are the
other agents, timers, pages and the plumbing (bulk produce, fast path, watchdog, health, metrics).
"""

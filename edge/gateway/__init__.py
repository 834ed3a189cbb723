"""The HTTP ingest gateway (``riskwatch gateway``): vendors post events with a source key.

- :mod:`edge.gateway.keys`: source keys (hashed), nonces of signed requests (SQLite under ``gateway_dir``);
- :mod:`edge.gateway.mapping`: vendor payload mappings as data (``riskwatch/data/sources/*.yaml``);
- :mod:`edge.gateway.accept`: body → items → validated events, per-item results, dead letters, sensor batches;
- :mod:`edge.gateway.evidence`: video snapshots fetched once and stored content-addressed;
- :mod:`edge.gateway.limits`: per-source rate limit in events/s;
- :mod:`edge.gateway.bus`: the idempotent ``acks=all`` producer;
- :mod:`edge.gateway.app`: the FastAPI app (``POST /v1/{kind}``, ``/docs``).
"""

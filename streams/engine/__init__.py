"""The pure engine: bytes → validated events → per-entity state → alerts, notices, rows. No Kafka, no Faust.

Read in this order: ``ingest.py`` (decode) → ``state.py`` (what an entity remembers) → ``dispatch.py``
(the ``Processor`` entry points) → ``handlers/`` (one module per input kind) → ``desk.py`` (raise, clear,
publish, audit chain) → ``batch.py`` (a batch of messages → sends, rows, states, counts, dead letters).
The Faust runtime (``streams/runtime/``) feeds it messages and stores what it returns.
"""

"""The streaming application: topics, ingest (bytes → validated events), per-entity state,
the processing step (event → detectors → alerts), and the Faust app that wires them to Kafka.

Read in this order: ``topics.py`` → ``ingest.py`` → ``state.py`` → ``processor.py`` → ``app.py``.
"""


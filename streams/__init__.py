"""The streaming application: topics, ingest (bytes → validated events), per-entity state,
the processing step (event → detectors → alerts), and the Faust app that wires them to Kafka.

Read in this order: ``topics.py`` → ``ingest.py`` → ``state.py`` → ``processor.py`` → ``app.py``.
"""

import os as _os

# Faust's Cython stream iterator never acknowledges a message it skips (one fetched before a
# rebalance or while recovery suspends the flow: ``_prepare_event`` returns no event, so
# ``after()`` acks nothing), unlike the pure-Python iterator, which acks it. Faust commits only
# contiguous acknowledged offsets, so after a worker restart or rebalance a partition's commits
# could stop for good while its events kept arriving: the pipeline looked stalled. riskwatch runs
# Faust's pure-Python stream path. Must be set before faust.streams is imported.
_os.environ.setdefault("NO_CYTHON", "1")

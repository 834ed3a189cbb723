"""riskwatch — streaming risk monitoring and early warning for 三品一特 cross-department supervision."""

__version__ = "0.1.0"

import os as _os

# Faust's Cython stream iterator never acknowledges a message it skips (one fetched before a
# rebalance or while recovery suspends the flow: ``_prepare_event`` returns no event, so
# ``after()`` acks nothing), unlike the pure-Python iterator, which acks it. Faust commits only
# contiguous acknowledged offsets, so after a worker restart or rebalance a partition's commits
# could stop for good while its events kept arriving: the pipeline looked stalled. riskwatch runs
# Faust's pure-Python stream path. Must be set before faust.streams is imported.
_os.environ.setdefault("NO_CYTHON", "1")

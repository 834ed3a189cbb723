"""streams/runtime/faust_fastpath.py: the worker keeps the log level it was given."""

from __future__ import annotations

import logging
import sys

import faust
import pytest
from faust.worker import Worker

from streams.runtime.faust_fastpath import quiet_worker


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stdout, stderr = sys.stdout, sys.stderr  # a worker may redirect them to its logger
    yield root
    sys.stdout, sys.stderr = stdout, stderr
    root.handlers[:] = handlers
    root.setLevel(level)


def _aiokafka_debug_enabled(make_worker) -> bool:
    app = faust.App(
        "riskwatch-test-quiet", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False, logging_config=None
    )
    w = make_worker(app)
    w._setup_logging()  # what the worker does first on start: mode's setup, then on_setup_root_logger
    return logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)


def test_faust_stock_worker_leaves_root_logger_at_debug(restore_root_logger):
    # the cost quiet_worker removes: with the stock worker every aiokafka debug call builds a record
    assert _aiokafka_debug_enabled(lambda app: Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False))


def test_quiet_worker_keeps_the_given_level(restore_root_logger):
    assert not _aiokafka_debug_enabled(lambda app: quiet_worker(app, loglevel="warn", redirect_stdouts=False))
    assert logging.getLogger().getEffectiveLevel() == logging.WARNING


def test_quiet_worker_still_logs_debug_when_asked(restore_root_logger):
    assert _aiokafka_debug_enabled(lambda app: quiet_worker(app, loglevel="debug", redirect_stdouts=False))

"""A fast path for Faust's message delivery loop (faust-streaming 0.15.x).

Faust's fetcher (``Consumer._drain_messages``) hands every message to the conductor with::

    await self.wait_first(callback(message), self.suspend_flow.wait())

``wait_first`` wraps each of its awaitables — the delivery, ``suspend_flow``, and the service's
``stopped`` and ``crashed`` events — in a new task, then ``asyncio.wait``s for the first. That is
four tasks and a round of the event loop per message: measured on this machine, a Faust agent that
does nothing consumes 6,000–6,500 messages/s at ~155 µs of CPU each, about half of it here
(``riskwatch bench`` reports it as ``faust_floor_eps``).

The delivery almost never waits: it suspends only when flow control is paused (a rebalance), the
producer buffer is over its limit, or a stream's queue is full. So the patched loop starts the
delivery coroutine directly; if it finishes without suspending (the common case) nothing else is
needed, and if it does suspend, the rest of it runs exactly as before — in a task raced against
``suspend_flow`` by ``wait_first`` — so a rebalance still interrupts a blocked delivery. Message
order, offsets, gaps and commits are untouched: the loop below is Faust's own, with that one call
changed. With it the do-nothing agent runs at ~12,700 messages/s (~80 µs each).

``quiet_worker()`` is Faust's worker without its start-up spinner, whose side effect costs CPU for
the worker's whole life (see there).

``install()`` is idempotent and refuses (with a warning, keeping Faust's loop) any Faust version
other than the one it was written against.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
from faust.transport import consumer as _consumer

log = logging.getLogger(__name__)

SUPPORTED = ("0.15.3",)
_installed = False


class _Resume:
    """Await the rest of a coroutine that was started by hand and suspended on ``first``.

    >>> async def two_steps():
    ...     await asyncio.sleep(0)
    ...     return 42
    >>> coro = two_steps()
    >>> first = coro.send(None)          # runs up to its first suspension
    >>> asyncio.run(asyncio.wait_for(_Resume(coro, first).wait(), 1))
    42
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro, first) -> None:
        self.coro, self.first = coro, first

    async def wait(self) -> Any:
        return await self

    def __await__(self):
        coro, pending = self.coro, self.first
        while True:
            try:
                value = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - cancellation and errors go into the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(value)
                except StopIteration as stop:
                    return stop.value


async def deliver(service, callback, message, suspend_flow) -> None:
    """Run ``callback(message)``; only if it suspends, race its remainder against ``suspend_flow``
    the way Faust does (``wait_first``)."""
    coro = callback(message)
    try:
        first = coro.send(None)
    except StopIteration:
        return
    except BaseException:
        coro.close()
        raise
    await service.wait_first(_Resume(coro, first).wait(), suspend_flow.wait())


async def _drain_messages(self, fetcher) -> None:  # pragma: no cover - exercised by every worker test
    # Faust 0.15.3's Consumer._drain_messages, with ``deliver`` in place of the per-message wait_first.
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = _consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    suspend_flow = self.suspend_flow

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await deliver(self, callback, message, suspend_flow)
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def install() -> bool:
    """Patch Faust's consumer loop; returns whether the fast path is active."""
    global _installed
    if _installed:
        return True
    if faust.__version__ not in SUPPORTED:
        log.warning(
            "faust-streaming %s is not one of %s: keeping Faust's own delivery loop (slower); "
            "check streams/runtime/faust_fastpath.py against the new version before adding it",
            faust.__version__,
            SUPPORTED,
        )
        return False
    # replacing Faust's method is what this module is for (checked against SUPPORTED above)
    _consumer.Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    _installed = True
    return True


def quiet_worker(app: faust.App, **kwargs: Any) -> Any:
    """Faust's ``Worker`` for ``app``, without the terminal spinner it shows while starting.

    To turn the spinner once per log record, Faust sets the *root* logger to DEBUG (its console
    handler keeps the chosen level) and never sets it back. Every ``log.debug`` call in aiokafka
    (one per partition per fetch request, others per produce request) then builds a LogRecord and
    looks up its caller's frame, only for the handlers to drop it. Measured with py-spy at 1,000
    events/s: 24 % of the consumer thread's samples. Without the spinner the root logger keeps the
    ``loglevel`` given (``riskwatch worker --loglevel``).
    """
    from faust.worker import Worker

    class QuietWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            self.spinner = None
            super().on_setup_root_logger(logger, level)

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            # what the spinner's "OK" said; to the real stderr, which Faust may have redirected to its log
            print(
                f"{self.app.conf.id}: started, state recovered, consuming (Ctrl-C stops)",
                file=sys.__stderr__ or sys.stderr,
                flush=True,
            )

    kwargs.setdefault("quiet", True)
    return QuietWorker(app, **kwargs)

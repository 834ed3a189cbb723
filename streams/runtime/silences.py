"""Following ``control.silences``: every worker reads the whole compacted topic into its
:class:`~streams.engine.silences.SilenceBoard` (the board itself is pure: ``streams/engine/silences.py``)."""

from __future__ import annotations

import logging

from streams.engine.silences import SilenceBoard

log = logging.getLogger(__name__)


async def follow(settings, topic: str, board: SilenceBoard) -> None:
    """Read ``topic`` from the beginning and keep following it, forever (a worker background task).
    No consumer group: every worker reads every partition (aiokafka assigns them all)."""
    from aiokafka import AIOKafkaConsumer

    kw = {}
    if settings.kafka_security_protocol != "PLAINTEXT":
        kw = dict(
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kw,
    )
    await consumer.start()
    try:
        async for r in consumer:
            board.apply(r.key, r.value)
            log.info("silences: %s updated (%d known)", r.key, len(board.active()))
    finally:
        await consumer.stop()

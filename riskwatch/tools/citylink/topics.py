"""Topic and header names of the city link, shared by the bridge, MirrorMaker's properties, ``status`` and the bench.

Outbound, for each topic ``T`` of ``settings.citylink_topics``::

    <prefix>T  --(bridge: mask)-->  <prefix>masked.T  --(MirrorMaker 2)-->  city: <county alias>.<prefix>masked.T

A **family** entry ``K.*`` (``events.inspection.*``) stands for every sender's topic of the event kind
``K`` (``events.inspection.<dept>``, one per department of the catalog: :mod:`streams.engine.identity`),
all masked into the one copy ``<prefix>masked.K``: the city keeps receiving one inspection stream
whoever sent the result.

Inbound, the city's task topic arrives as ``<city alias>.<city task topic>`` (MirrorMaker 2's
DefaultReplicationPolicy), and the bridge re-keys it onto the county's ``<prefix>events.task``.

>>> from riskwatch.settings import Settings
>>> s = Settings(topic_prefix="x.", citylink_county_alias="county", citylink_city_alias="city",
...              citylink_city_task_topic="events.task")
>>> masked_topic(s, "alerts.all"), city_remote_topic(s, "alerts.all"), inbound_topic(s)
('x.masked.alerts.all', 'county.x.masked.alerts.all', 'city.events.task')
>>> masked_topic(s, "events.inspection.*"), source_topics(s, "events.inspection.*", ("amr", "police"))
('x.masked.events.inspection', {'x.events.inspection.amr': 'amr', 'x.events.inspection.police': 'police'})
"""

from __future__ import annotations

from collections.abc import Iterable

from riskwatch.settings import Settings

MASKED = "masked."
FAMILY = ".*"  # suffix of a citylink_topics entry standing for every sender's topic of a kind
SRC_OFFSET = "rw-src-offset"  # header of a masked copy: the offset of its source record (the bridge resumes after it)
# header of a family's copy: {sender: last copied offset} of every member copied into this partition so far
SRC_OFFSETS = "rw-src-offsets"
ORIGIN = "rw-origin"  # header of a relayed task: the city's alias


def family_kind(name: str) -> str | None:
    """The event kind of a family entry (``events.inspection.*`` -> ``events.inspection``), else None."""
    return name[: -len(FAMILY)] if name.endswith(FAMILY) else None


def source_topics(settings: Settings, name: str, senders: Iterable[str]) -> dict[str, str | None]:
    """The county topics read for the entry ``name``: {prefixed topic: sender}, the sender None for a
    plain topic; for a family, one topic per sender (``senders``: the catalog's, see the bridge)."""
    kind = family_kind(name)
    if kind is None:
        return {settings.topic(name): None}
    return {settings.topic(f"{kind}.{sender}"): sender for sender in senders}


def masked_topic(settings: Settings, name: str) -> str:
    """The county topic MirrorMaker replicates for ``name`` (a name of ``citylink_topics``; a family
    ``K.*`` has the one copy ``masked.K``)."""
    return settings.topic(MASKED + (family_kind(name) or name))


def city_remote_topic(settings: Settings, name: str) -> str:
    """Where the city finds ``name`` under MirrorMaker 2's DefaultReplicationPolicy."""
    return f"{settings.citylink_county_alias}.{masked_topic(settings, name)}"


def inbound_topic(settings: Settings) -> str:
    """Where the county finds the city's tasks under MirrorMaker 2's DefaultReplicationPolicy."""
    return f"{settings.citylink_city_alias}.{settings.citylink_city_task_topic}"

"""Topic and header names of the city link, shared by the bridge, MirrorMaker's properties, ``status`` and the bench.

Outbound, for each topic ``T`` of ``settings.citylink_topics``::

    <prefix>T  --(bridge: mask)-->  <prefix>masked.T  --(MirrorMaker 2)-->  city: <county alias>.<prefix>masked.T

Inbound, the city's task topic arrives as ``<city alias>.<city task topic>`` (MirrorMaker 2's
DefaultReplicationPolicy), and the bridge re-keys it onto the county's ``<prefix>events.task``.

>>> from riskwatch.settings import Settings
>>> s = Settings(topic_prefix="x.", citylink_county_alias="county", citylink_city_alias="city",
...              citylink_city_task_topic="events.task")
>>> masked_topic(s, "alerts.all"), city_remote_topic(s, "alerts.all"), inbound_topic(s)
('x.masked.alerts.all', 'county.x.masked.alerts.all', 'city.events.task')
"""

from __future__ import annotations

from riskwatch.settings import Settings

MASKED = "masked."
SRC_OFFSET = "rw-src-offset"  # header of a masked copy: the offset of its source record (the bridge resumes after it)
ORIGIN = "rw-origin"  # header of a relayed task: the city's alias


def masked_topic(settings: Settings, name: str) -> str:
    """The county topic MirrorMaker replicates for ``name`` (a name of ``citylink_topics``)."""
    return settings.topic(MASKED + name)


def city_remote_topic(settings: Settings, name: str) -> str:
    """Where the city finds ``name`` under MirrorMaker 2's DefaultReplicationPolicy."""
    return f"{settings.citylink_county_alias}.{masked_topic(settings, name)}"


def inbound_topic(settings: Settings) -> str:
    """Where the county finds the city's tasks under MirrorMaker 2's DefaultReplicationPolicy."""
    return f"{settings.citylink_city_alias}.{settings.citylink_city_task_topic}"

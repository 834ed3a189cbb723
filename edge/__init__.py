"""The edge: where real sources connect (a front end, beside ``web``).

- ``edge.gateway``: the HTTP ingest service (``riskwatch gateway``), source keys, vendor mappings;
- ``edge.mqtt``: the mosquitto broker's configuration and the MQTT → Kafka bridge (``riskwatch mqtt``);
- ``edge.imports``: Excel/CSV imports (``riskwatch import``);
- ``edge.matching``: entity matching of events that name a business instead of an ``entity_id``.

Every edge sets an event's ``source`` from the transport (a source key, a device's MQTT login, the
operator's import), never from the body, and writes to Kafka with ``acks=all`` before it says yes.
"""

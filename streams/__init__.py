"""The streaming application, in two layers: ``streams.engine`` — the pure processing (decode, state,
handlers per event kind, the alert desk, a batch at a time), tested without Kafka — and
``streams.runtime`` — the Faust app, agents, timers and commit pipeline that wire the engine to Kafka.
The bridge to the city's platform lives in ``riskwatch.tools.citylink``.
"""

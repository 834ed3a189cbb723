"""Grafana dashboards for riskwatch, generated from Python (grafana-foundation-sdk builders).

``dashboards.build`` defines them, ``dashboards/json/*.json`` holds the generated files (the
Grafana file provider in ``dashboards/provisioning`` reads them), ``dashboards.provision``
pushes them over the Grafana HTTP API and ``riskwatch.cli.grafana`` is ``riskwatch grafana ...``.
"""

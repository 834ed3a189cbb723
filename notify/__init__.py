"""Notification delivery: riskwatch decides what to tell whom and when; Prometheus Alertmanager delivers.

* :mod:`notify.receivers` — the county's receivers file (each department's channels), validated;
* :mod:`notify.text` — the Chinese message text of one notification;
* :mod:`notify.bridge` — ``riskwatch notify``: alerts.<dept> topics → Alertmanager ``POST /api/v2/alerts``;
* :mod:`notify.amconfig` — ``alertmanager.yml`` from the catalog and the receivers file;
* :mod:`notify.robots` — adapter from Alertmanager's webhook to 企业微信 / 钉钉 group robots.

See docs/notifications.md.
"""

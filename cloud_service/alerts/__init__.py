"""Adjustment alerts: rules, an ISA-18.2 lifecycle, and delivery that loses nothing.

Pure cores: ``rules`` (+ ``explain``, ``inputs``) evaluate a snapshot into condition states,
``lifecycle`` turns them into transitions, ``routing`` and ``outbox`` decide what to deliver.
Thin shells: ``service`` (one lock, one transaction per step), ``store`` (SQLAlchemy async),
``dispatcher`` (the outbox loop) and one sink per channel: ``mqtt_delivery``, ``webhooks``
(+ ``ssrf``), ``email``; ``stream`` serves Server-Sent Events. See ``docs/alerts.md``.
Nothing is imported here, so importing a pure module never pulls in FastAPI or paho.
"""

"""MQTT telemetry into the time-series store, acknowledged end to end."""

"""The Flightdeck cloud service: ingest, storage, alerting and the API around them."""

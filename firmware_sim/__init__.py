"""Simulated plant-floor devices and the local broker/database stack they talk to."""

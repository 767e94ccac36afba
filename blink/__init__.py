"""Blink: real-time personalization. Shared core used by batch (jobs/) and serving (serving/)."""

__version__ = "0.1.0"

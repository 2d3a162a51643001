"""switchover: zero-downtime cutover of an HTTP service and its data."""

__version__ = "0.1.0"

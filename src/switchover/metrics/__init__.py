"""Metrics providers: where observations of each role come from (``base.MetricsProvider``)."""

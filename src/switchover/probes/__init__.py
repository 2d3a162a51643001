"""Probes: preflight checks, DNS TTLs, synthetic user journeys (readiness lives in ``readiness``)."""

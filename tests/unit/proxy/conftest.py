"""Unit tests of the proxy area: pure code (routing, health, stats, state, configuration)."""

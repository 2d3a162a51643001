"""Unit tests of the controller area: pure code (analysis, decision, journal fold)."""

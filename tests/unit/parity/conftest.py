"""Unit tests of the parity core: pure functions, no sockets."""

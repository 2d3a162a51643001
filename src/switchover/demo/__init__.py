"""`switchover demo`: a sample orders service (v1, v2), the built-in proxy, a load generator, a plan."""

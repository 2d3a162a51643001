"""Pure analysis: gates, statistics and verdicts. No sockets, no clocks, no adapters."""

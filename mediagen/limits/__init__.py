"""Per-tenant limits: submission rate (token bucket), active jobs, open WatchJob streams."""

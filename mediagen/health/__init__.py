"""Dependency-aware health: probes of the database, Redis and storage, decided by a pure rule
(:mod:`.status`), published on grpc.health.v1 (:mod:`.checker`, :mod:`.servicer`)."""

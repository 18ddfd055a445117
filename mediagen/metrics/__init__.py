"""Prometheus metrics: every definition in :mod:`.definitions`, the gRPC interceptor in
:mod:`.grpc`, the HTTP middleware and ``/metrics`` endpoint in :mod:`.http`, the database gauges
in :mod:`.gauges`, the provider and storage wrappers in :mod:`.instrumented`, and a process's
own metrics port in :mod:`.server`.

One port per process, not prometheus-client's multiprocess mode: every role is one asyncio
process (more capacity means more processes or pods, each its own scrape target), so nothing
forks workers that would share a registry. Multiprocess mode would add a shared directory that
must be wiped at every start, gauges that need a merge policy, and no custom collectors.
"""

"""Every metric mediagen exports: name, help and labels, in one place.

Labels stay low-cardinality: gRPC method and code, HTTP route template and status, model (from
the allowed list), job state, and fixed words for outcomes, operations and reasons. Never a
job id, a tenant, a prompt or a raw path.

The metrics live on prometheus-client's default registry (which adds ``process_*`` and
``python_*``): one registry per process, and each process serves its own (see
:mod:`mediagen.metrics`).
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase

# ``*_created`` series double a scrape's size and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Request latencies (seconds): a call, an HTTP request, a provider call.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Job phases (seconds): queued, running; up to the default 30 min job timeout.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: Storage writes (seconds): small images to multi-GiB videos.
STORAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# ---- API --------------------------------------------------------------------------------------

GRPC_REQUESTS = Counter(
    "mediagen_grpc_requests_total",
    "gRPC calls handled, by method and final status code (refused by authentication too).",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "mediagen_grpc_request_duration_seconds",
    "Time to handle a unary gRPC call, by method (streams are counted, not timed).",
    ["method"],
    buckets=FAST_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "mediagen_http_requests_total",
    "Gateway HTTP requests, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "mediagen_http_request_duration_seconds",
    "Time from a gateway HTTP request to its response headers, by method and route template.",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)
WATCH_STREAMS = Gauge(
    "mediagen_watch_streams_open", "WatchJob streams open in this process right now."
)
WATCH_EVENTS = Counter("mediagen_watch_events_sent_total", "Events sent on WatchJob streams.")
WEBHOOKS = Counter(
    "mediagen_webhooks_received_total",
    "Replicate webhooks at the gateway, by outcome: accepted, duplicate or refused.",
    ["outcome"],
)

# ---- jobs -------------------------------------------------------------------------------------

JOBS_SUBMITTED = Counter(
    "mediagen_jobs_submitted_total",
    "Jobs created by GenerateMedia (not idempotent repeats).",
    ["model"],
)
JOBS_FINISHED = Counter(
    "mediagen_jobs_finished_total",
    "Jobs that reached a final state, by state and model.",
    ["state", "model"],
)
JOB_QUEUED = Histogram(
    "mediagen_job_queued_seconds",
    "Time from submission to a job's first claim by a worker, by model.",
    ["model"],
    buckets=JOB_BUCKETS,
)
JOB_RUNNING = Histogram(
    "mediagen_job_running_seconds",
    "Time one attempt held its job (claim to success, failure, retry or cancel), by model.",
    ["model"],
    buckets=JOB_BUCKETS,
)
JOB_RETRIES = Counter(
    "mediagen_job_retries_total",
    "Attempts sent back to PENDING to retry later, by reason.",
    ["reason"],
)
LEASES_LOST = Counter(
    "mediagen_leases_lost_total",
    "Attempts stopped because their lease expired and another worker took the job.",
)

# ---- database gauges (computed on scrape, at most every MEDIAGEN_METRICS_QUERY_INTERVAL_S) ------

JOBS_ACTIVE = Gauge(
    "mediagen_jobs",
    "Jobs in a non-final state now (pending, running); finished ones are "
    "mediagen_jobs_finished_total.",
    ["state"],
)
QUEUE_DEPTH = Gauge("mediagen_queue_depth", "PENDING jobs that are due: waiting for a worker.")
QUEUE_OLDEST = Gauge(
    "mediagen_queue_oldest_age_seconds", "How long the longest-waiting due PENDING job has waited."
)
JOBS_LEASE_EXPIRED = Gauge(
    "mediagen_jobs_lease_expired",
    "RUNNING jobs whose lease expired: no worker is renewing them (stuck until reclaimed).",
)
GAUGE_QUERY_FAILURES = Counter(
    "mediagen_gauge_query_failures_total",
    "Scrapes whose database gauges could not be refreshed (the values shown are older).",
)

# ---- worker -----------------------------------------------------------------------------------

WORKER_IN_FLIGHT = Gauge("mediagen_worker_jobs_in_flight", "Jobs this worker is running now.")
WORKER_CONCURRENCY = Gauge(
    "mediagen_worker_concurrency",
    "Jobs this worker may run at once (MEDIAGEN_WORKER_CONCURRENCY); exported by live workers.",
)
PROVIDER_REQUESTS = Counter(
    "mediagen_provider_requests_total",
    "Calls to the model provider, by operation and outcome (ok, transient, permanent, ambiguous).",
    ["operation", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "mediagen_provider_request_duration_seconds",
    "Duration of a provider call (a download: its whole stream), by operation.",
    ["operation"],
    buckets=FAST_BUCKETS,
)
PROVIDER_BUDGET_WAIT = Histogram(
    "mediagen_provider_budget_wait_seconds",
    "Time a provider call waited for the shared request budget (and any 429 pause), by budget "
    "(create, other).",
    ["budget"],
    buckets=JOB_BUCKETS,
)
PROVIDER_THROTTLED = Counter(
    "mediagen_provider_throttled_total",
    "429 answers from the provider, by operation; each pauses every worker.",
    ["operation"],
)
AMBIGUOUS_CREATES = Counter(
    "mediagen_ambiguous_creates_total",
    "Creates without a definite answer: a prediction may exist and is looked for before "
    "another create.",
)
RECOVERIES = Counter(
    "mediagen_prediction_recoveries_total",
    "Recoveries after an unanswered create: its prediction found and adopted, or none (then "
    "a new create).",
    ["outcome"],
)
RECONCILER_ACTIONS = Counter(
    "mediagen_reconciler_actions_total",
    "What the reconciler did: resent (a wake-up), enqueue_failed, pass_failed.",
    ["action"],
)

RETENTION_DELETED = Counter(
    "mediagen_retention_deleted_total",
    "What retention deleted (finished jobs past MEDIAGEN_RETENTION_DAYS), by kind: jobs, "
    "events, media.",
    ["kind"],
)
RETENTION_DELETED_BYTES = Counter(
    "mediagen_retention_deleted_bytes_total",
    "Bytes of media retention removed from storage (the sizes recorded for them).",
)
RETENTION_FAILURES = Counter(
    "mediagen_retention_failures_total",
    "Retention batches that kept jobs back because storage failed (reason storage: their "
    "objects stay, and so do their rows, for a later pass), and passes that failed (database, "
    "internal).",
    ["reason"],
)

# ---- storage ----------------------------------------------------------------------------------

STORAGE_BYTES = Counter("mediagen_storage_bytes_total", "Bytes written to media storage.")
STORAGE_OPERATIONS = Counter(
    "mediagen_storage_operations_total",
    "Storage operations (put, delete, url), by outcome (ok, error).",
    ["operation", "outcome"],
)
STORAGE_LATENCY = Histogram(
    "mediagen_storage_operation_duration_seconds",
    "Duration of a storage operation, by operation.",
    ["operation"],
    buckets=STORAGE_BUCKETS,
)

# ---- process ----------------------------------------------------------------------------------

DEPENDENCY_UP = Gauge(
    "mediagen_dependency_up",
    "1 while a dependency (database, redis, storage) answers this process's health probe.",
    ["component"],
)

INFO = Gauge(
    "mediagen_process_info",
    "1 for each running mediagen process, by role and version.",
    ["role", "version"],
)

ALL: tuple[MetricWrapperBase, ...] = tuple(
    value for value in tuple(globals().values()) if isinstance(value, MetricWrapperBase)
)


def exposed_names(metrics: tuple[MetricWrapperBase, ...] = ALL) -> set[str]:
    """Every series name a scrape can show for ``metrics`` (a counter's ``_total``, a
    histogram's ``_bucket``, ``_sum`` and ``_count``, ...): what dashboards and alerts may use."""
    names: set[str] = set()
    for metric in metrics:
        base = metric._name
        kind = metric._type
        if kind == "counter":
            names.add(f"{base}_total")
        elif kind == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(base)
    return names


def registry() -> CollectorRegistry:
    """The registry these metrics are on (what ``/metrics`` renders)."""
    return REGISTRY

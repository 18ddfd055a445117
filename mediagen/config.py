"""Settings: read once from the environment at start-up, frozen, and passed down.

Deep code never reads ``os.environ``; it receives a :class:`Settings`. Every variable read here is
listed in the README's configuration table. Names follow the original service where they still
fit (``DATABASE_URL``, ``REDIS_URL``, ``REPLICATE_*``, ``STORAGE_TYPE``, ``S3_*``); everything
else is ``MEDIAGEN_*``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mediagen.fetching.policy import DELIVERY_HOSTS, parse_rules

#: The model used when a request names none, unless REPLICATE_MODEL says otherwise.
DEFAULT_MODEL = "stability-ai/sdxl"

#: SECRET_KEY values that are public (the old built-in default, the manifests' placeholder):
#: a key anyone can read signs nothing.
PUBLIC_SECRET_KEYS = frozenset({"mediagen-dev-secret", "CHANGE-ME"})


#: Seconds in a day (MEDIAGEN_RETENTION_DAYS is read in days).
DAY_S = 86_400.0
#: A century: longer is a typo for "forever", which is 0.
MAX_RETENTION_DAYS = 36_500
#: MEDIAGEN_LOG_FORMAT values (mediagen.logs.formatting).
LOG_FORMATS = ("json", "text", "auto")


class ConfigError(ValueError):
    """A setting is missing or malformed; raised at start-up, never per request."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value >= 0:  # also refuses nan
        raise ConfigError(f"{name} must not be negative (0 turns it off), got {value}")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:  # also refuses nan
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _count(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """A size or number of things: at least ``minimum`` (1 unless 0 means something)."""
    value = _int(env, name, default)
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if not 0 <= value <= 65_535:
        raise ConfigError(f"{name} must be a port number (0 to 65535), got {value}")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    """A Redis key or prefix: unset means ``default``; set, it must say something (an empty
    one would share keys with whatever else uses that Redis)."""
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.strip():
        raise ConfigError(f"{name} must not be empty (unset it for {default!r})")
    return raw


def _at_least(high: tuple[str, float], low: tuple[str, float]) -> None:
    if high[1] < low[1]:
        raise ConfigError(f"{high[0]} must be at least {low[0]}, got {high[1]:g} < {low[1]:g}")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _hosts(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A host allowlist (``host``, ``*.domain``, ``host:port``); unset or empty: ``default``."""
    if not env.get(name, "").strip():
        return default
    hosts = _list(env, name)
    try:
        parse_rules(hosts)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc
    return hosts


@dataclass(frozen=True)
class S3Settings:
    """Where and how media go to S3 (or MinIO, or any S3-compatible server)."""

    bucket: str = "mediagen"
    endpoint_url: str | None = None  # None: AWS; set for MinIO or a local S3 server
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str = "us-east-1"
    addressing_style: str = "auto"  # "path" for MinIO and most local servers
    create_bucket: bool = False  # create the bucket at start if it is missing
    public_base_url: str | None = None  # set: URLs are <base>/<key>, not presigned
    presign_expiry_s: int = 3600
    part_size_bytes: int = 8 * 1024 * 1024  # multipart part size; S3's minimum is 5 MiB


@dataclass(frozen=True)
class TLSSettings:
    """The certificate both listeners (gRPC and HTTP) present; with ``client_ca``, every client
    must present a certificate that CA signed (mTLS). PEM files; see :mod:`mediagen.tls`."""

    cert: Path  # the certificate chain, leaf first
    key: Path  # its private key, unencrypted
    client_ca: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


def _tls(env: Mapping[str, str]) -> TLSSettings | None:
    cert = env.get("MEDIAGEN_TLS_CERT", "").strip()
    key = env.get("MEDIAGEN_TLS_KEY", "").strip()
    client_ca = env.get("MEDIAGEN_TLS_CLIENT_CA", "").strip()
    if bool(cert) != bool(key):
        raise ConfigError("MEDIAGEN_TLS_CERT and MEDIAGEN_TLS_KEY must be set together")
    if not cert:
        if client_ca:
            raise ConfigError("MEDIAGEN_TLS_CLIENT_CA needs MEDIAGEN_TLS_CERT and MEDIAGEN_TLS_KEY")
        return None
    return TLSSettings(Path(cert), Path(key), Path(client_ca) if client_ca else None)


@dataclass(frozen=True)
class HttpSettings:
    """The gateway's HTTP side: what one client may cost it (sizes, times, connections), and
    which other sites may call it from a browser."""

    max_body_bytes: int = 1024 * 1024  # larger request bodies get 413
    max_header_bytes: int = 16 * 1024  # request line plus headers; larger get 431
    header_timeout_s: float = 10.0  # to receive the request line and headers (slowloris)
    body_timeout_s: float = 30.0  # to receive the body once the headers are in
    keepalive_s: float = 5.0  # an idle connection (no request in progress) is closed after this
    max_connections: int = 1000  # open connections; beyond this a new one gets 503 and is closed
    cors_origins: tuple[str, ...] = ()  # origins allowed cross-site; empty: CORS off


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded defaults."""

    # Where embedded state lives: the SQLite file and local media.
    data_dir: Path = Path(".mediagen")
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    # Base of the URLs of locally stored media; default http(s)://<host>:<http_port>.
    public_url: str | None = None
    tls: TLSSettings | None = None  # None: plaintext listeners

    database_url: str | None = None  # None: SQLite in data_dir
    db_pool_size: int = 5
    db_max_overflow: int = 10
    # PostgreSQL cuts off what would otherwise hold the store hostage; 0 turns one off.
    # A statement runs at most this long (ours take milliseconds; migrations are exempt).
    db_statement_timeout_s: float = 30.0
    # A statement waits at most this long for a row or table lock, then fails transiently;
    # also SQLite's busy timeout (how long a write waits for another process's write lock).
    db_lock_timeout_s: float = 5.0
    # A session idle inside a transaction (a frozen or stopped process) is terminated after
    # this long, releasing its locks; we never keep one open across a provider or storage call.
    db_idle_in_transaction_timeout_s: float = 10.0

    redis_url: str | None = None  # None: in-process queue and event bus (embedded)
    queue_name: str = "mediagen:jobs"
    events_channel_prefix: str = "mediagen:events:"

    replicate_api_token: str | None = None  # None: run against the bundled emulator
    replicate_base_url: str | None = None  # None: Replicate itself (or the emulator)
    default_model: str = DEFAULT_MODEL
    # Models a request may name; empty means only the default model.
    allowed_models: tuple[str, ...] = ()
    poll_interval_s: float = 0.5  # first provider poll; backs off to poll_interval_max_s
    poll_interval_max_s: float = 2.0
    provider_read_timeout_s: float = 30.0  # longest silence in a provider answer
    # Base of the marker URL every create carries; default <public url>/webhooks/replicate.
    # Set, it also says webhooks arrive: polling becomes the slow fallback below.
    webhook_url: str | None = None
    webhook_fallback_poll_s: float = 30.0  # with webhook_url set: poll this often (±20 %)
    webhook_tolerance_s: float = 300.0  # a webhook's timestamp may be this far from now
    webhook_max_body_bytes: int = 4 * 1024 * 1024  # larger webhook bodies get 413
    # None: fetched from Replicate (GET /v1/webhooks/default/secret) with the API token.
    replicate_webhook_secret: str | None = None
    # After a create without a definite answer, a prediction that late may still appear: a lookup
    # finding nothing is trusted only this long after the lost create (docs/predictions.md).
    ambiguous_settle_s: float = 30.0
    # The account's request budget, shared by every worker (through Redis when it is set); 0
    # turns one off. Replicate's limits by default (mediagen/providers/budget.py).
    provider_creates_per_min: float = 600.0
    provider_requests_per_min: float = 3000.0  # every other call: get, cancel, list
    provider_budget_prefix: str = "mediagen:provider-budget:"  # Redis keys of the budget
    provider_budget_max_wait_s: float = 600.0  # longest wait for the budget (0: no bound)
    # Connections to the provider's API per process; 0: sized from the concurrency and budget.
    provider_max_connections: int = 0

    storage_type: str = "local"  # "local" or "s3"
    s3: S3Settings = field(default_factory=S3Settings)
    max_output_bytes: int = 2 * 1024**3
    max_outputs: int = 20  # a prediction returning more fails the job
    # Hosts outputs may be fetched from, and the ones that get the Replicate token (besides
    # the API itself); see mediagen/fetching/policy.py for the entry forms.
    output_hosts: tuple[str, ...] = DELIVERY_HOSTS
    output_token_hosts: tuple[str, ...] = DELIVERY_HOSTS
    download_timeout_s: float = 600.0  # one output, first byte to last
    download_min_rate_bps: float = 16 * 1024  # average, after the first 10 s; 0: no minimum

    worker_concurrency: int = 200  # jobs in flight per worker process
    lease_s: float = 30.0  # a claim is good for this long unless renewed
    reconcile_interval_s: float = 5.0
    max_attempts: int = 5
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    job_timeout_s: float = 1800.0  # an attempt that runs longer fails transiently
    shutdown_grace_s: float = 10.0
    estimate_default_s: float = 30.0  # completion estimate before a model has any history
    # Finished jobs (events, media rows and files too) are deleted this long after they ended;
    # 0 keeps them forever. Read in days (MEDIAGEN_RETENTION_DAYS); see the README's Retention.
    retention_s: float = 30 * DAY_S
    retention_interval_s: float = 600.0  # how often a worker (or scheduler) looks for them
    retention_batch_size: int = 100  # jobs deleted per short transaction

    worker_health_port: int = 50052  # grpc.health.v1 of a worker process; 0: none
    health_interval_s: float = 2.0  # how often each dependency is probed for health
    health_timeout_s: float = 1.0  # a probe without an answer this long counts as failed
    # Prometheus metrics (mediagen/metrics): off stops request instrumentation and /metrics.
    metrics: bool = True
    metrics_port: int = 0  # own /metrics port of api, worker, scheduler, serve; 0: none
    metrics_query_interval_s: float = 5.0  # database gauges are recomputed at most this often
    emulator_port: int = 0  # 0: any free port
    emulator_latency_s: float = 3.0  # how long an emulated prediction runs
    emulator_creates_per_min: float = 600.0  # the emulator's per-account limits; 0: none
    emulator_requests_per_min: float = 3000.0

    # Per-tenant limits; 0 turns each off. The rate is shared through Redis when it is set.
    rate_limit_per_s: float = 0.0  # sustained GenerateMedia calls per second per tenant
    rate_limit_burst: int = 10  # calls a tenant may make at once (the bucket's size)
    rate_limit_prefix: str = "mediagen:ratelimit:"  # Redis keys of the buckets
    max_active_jobs: int = 0  # PENDING + RUNNING jobs per tenant
    max_watch_streams: int = 0  # open WatchJob streams per tenant, per API process
    # How often an API process checks its open WatchJob streams for events no bus message
    # announced (a worker killed between commit and publish); 0: never.
    watch_sweep_s: float = 5.0

    grpc_max_message_bytes: int = 4 * 1024 * 1024  # gRPC requests and responses, each way
    http: HttpSettings = field(default_factory=HttpSettings)

    # Signs page tokens and local media URLs. Empty: unset; `serve` then keeps a generated one
    # in data_dir, and the distributed roles refuse to start (see secret_key_problem).
    secret_key: str = ""
    media_url_ttl_s: int = 3600  # lifetime of a signed local media URL
    # Authentication (mediagen.auth): on by default; see mediagen/auth/startup.py for the rule.
    auth: bool = True
    auth_cache_s: float = 5.0  # verified keys are trusted this long (revocation lag)
    auth_reflection: bool = False  # True: server reflection needs credentials too
    # Client-certificate subjects (CN, subjectAltName or whole subject) that act as admins.
    auth_mtls_admins: tuple[str, ...] = ()
    # Client-certificate subjects that stand for the tenant their CN names ("*": any verified one).
    auth_mtls_tenants: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: str = "auto"  # one of LOG_FORMATS; auto: text on a terminal, else JSON lines

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "mediagen.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path}"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def effective_public_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.http_port}").rstrip("/")

    @property
    def secret_key_path(self) -> Path:
        """Where `serve` keeps its generated SECRET_KEY."""
        return self.data_dir / "secret_key"

    @property
    def effective_webhook_url(self) -> str:
        return (self.webhook_url or f"{self.effective_public_url}/webhooks/replicate").rstrip("/")

    @property
    def webhooks_expected(self) -> bool:
        """Whether completion webhooks are expected to arrive (MEDIAGEN_WEBHOOK_URL is set)."""
        return self.webhook_url is not None

    @property
    def models(self) -> tuple[str, ...]:
        """The allowlist, always including the default model."""
        return tuple(dict.fromkeys((self.default_model, *self.allowed_models)))

    @property
    def distributed(self) -> bool:
        """True when a Redis URL is set: queue and events go through Redis."""
        return self.redis_url is not None

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and CLI flags use this)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        media_url_ttl_s = _int(env, "MEDIAGEN_MEDIA_URL_TTL_S", d.media_url_ttl_s)
        if media_url_ttl_s <= 0:
            raise ConfigError(f"MEDIAGEN_MEDIA_URL_TTL_S must be positive, got {media_url_ttl_s}")
        storage_type = env.get("STORAGE_TYPE", d.storage_type).strip().lower() or "local"
        if storage_type not in {"local", "s3"}:
            raise ConfigError(f"STORAGE_TYPE must be 'local' or 's3', got {storage_type!r}")
        s3d = S3Settings()
        s3 = S3Settings(
            bucket=env.get("S3_BUCKET_NAME", s3d.bucket),
            endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            access_key_id=env.get("S3_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("S3_SECRET_ACCESS_KEY") or None,
            region=env.get("S3_REGION", s3d.region),
            addressing_style=env.get("S3_ADDRESSING_STYLE", s3d.addressing_style),
            create_bucket=_bool(env, "S3_CREATE_BUCKET", s3d.create_bucket),
            public_base_url=env.get("S3_PUBLIC_BASE_URL") or None,
            # Both checked by S3Storage, which knows S3's limits.
            presign_expiry_s=_int(env, "S3_PRESIGN_EXPIRY_S", s3d.presign_expiry_s),
            part_size_bytes=_int(env, "S3_PART_SIZE_BYTES", s3d.part_size_bytes),
        )
        hd = HttpSettings()
        http = HttpSettings(
            max_body_bytes=_count(env, "MEDIAGEN_HTTP_MAX_BODY_BYTES", hd.max_body_bytes),
            max_header_bytes=_count(env, "MEDIAGEN_HTTP_MAX_HEADER_BYTES", hd.max_header_bytes),
            header_timeout_s=_positive(env, "MEDIAGEN_HTTP_HEADER_TIMEOUT_S", hd.header_timeout_s),
            body_timeout_s=_positive(env, "MEDIAGEN_HTTP_BODY_TIMEOUT_S", hd.body_timeout_s),
            keepalive_s=_positive(env, "MEDIAGEN_HTTP_KEEPALIVE_S", hd.keepalive_s),
            max_connections=_count(env, "MEDIAGEN_HTTP_MAX_CONNECTIONS", hd.max_connections),
            cors_origins=_list(env, "MEDIAGEN_CORS_ORIGINS"),
        )
        debug = _bool(env, "DEBUG", False)
        rate_limit_per_s = _float(env, "MEDIAGEN_RATE_LIMIT_PER_S", d.rate_limit_per_s)
        rate_limit_burst = _int(env, "MEDIAGEN_RATE_LIMIT_BURST", d.rate_limit_burst)
        if rate_limit_per_s < 0 or rate_limit_burst < 1:
            raise ConfigError(
                "MEDIAGEN_RATE_LIMIT_PER_S must not be negative and MEDIAGEN_RATE_LIMIT_BURST "
                f"must be at least 1, got {rate_limit_per_s:g} and {rate_limit_burst}"
            )
        provider_max_connections = _int(
            env, "MEDIAGEN_PROVIDER_MAX_CONNECTIONS", d.provider_max_connections
        )
        if provider_max_connections < 0:
            raise ConfigError("MEDIAGEN_PROVIDER_MAX_CONNECTIONS must not be negative (0: sized)")
        max_active_jobs = _int(env, "MEDIAGEN_MAX_ACTIVE_JOBS", d.max_active_jobs)
        max_watch_streams = _int(env, "MEDIAGEN_MAX_WATCH_STREAMS", d.max_watch_streams)
        if max_active_jobs < 0 or max_watch_streams < 0:
            raise ConfigError(
                "MEDIAGEN_MAX_ACTIVE_JOBS and MEDIAGEN_MAX_WATCH_STREAMS must not be negative "
                "(0 turns a limit off)"
            )
        retention_days = _seconds(env, "MEDIAGEN_RETENTION_DAYS", d.retention_s / DAY_S)
        if not retention_days <= MAX_RETENTION_DAYS:  # also refuses nan and inf
            raise ConfigError(
                f"MEDIAGEN_RETENTION_DAYS must be at most {MAX_RETENTION_DAYS} (0 keeps jobs "
                f"forever), got {retention_days:g}"
            )
        retention_interval_s = _float(env, "MEDIAGEN_RETENTION_INTERVAL_S", d.retention_interval_s)
        retention_batch_size = _int(env, "MEDIAGEN_RETENTION_BATCH_SIZE", d.retention_batch_size)
        if retention_interval_s <= 0 or not 1 <= retention_batch_size <= 1000:
            raise ConfigError(
                "MEDIAGEN_RETENTION_INTERVAL_S must be positive and MEDIAGEN_RETENTION_BATCH_SIZE "
                f"1..1000, got {retention_interval_s:g} and {retention_batch_size}"
            )
        poll_interval_s = _positive(env, "MEDIAGEN_POLL_INTERVAL_S", d.poll_interval_s)
        poll_interval_max_s = _positive(env, "MEDIAGEN_POLL_INTERVAL_MAX_S", d.poll_interval_max_s)
        retry_base_s = _positive(env, "MEDIAGEN_RETRY_BASE_S", d.retry_base_s)
        retry_max_s = _positive(env, "MEDIAGEN_RETRY_MAX_S", d.retry_max_s)
        # Each backs off from the first to the most: a smaller most would shorten the waits.
        _at_least(
            ("MEDIAGEN_POLL_INTERVAL_MAX_S", poll_interval_max_s),
            ("MEDIAGEN_POLL_INTERVAL_S", poll_interval_s),
        )
        _at_least(("MEDIAGEN_RETRY_MAX_S", retry_max_s), ("MEDIAGEN_RETRY_BASE_S", retry_base_s))
        return cls(
            data_dir=Path(env.get("MEDIAGEN_DATA_DIR", str(d.data_dir))),
            host=env.get("MEDIAGEN_HOST", d.host),
            grpc_port=_port(env, "MEDIAGEN_GRPC_PORT", d.grpc_port),
            http_port=_port(env, "MEDIAGEN_HTTP_PORT", d.http_port),
            public_url=env.get("MEDIAGEN_PUBLIC_URL") or None,
            tls=_tls(env),
            database_url=env.get("DATABASE_URL") or None,
            db_pool_size=_count(env, "MEDIAGEN_DB_POOL_SIZE", d.db_pool_size),
            db_max_overflow=_count(env, "MEDIAGEN_DB_MAX_OVERFLOW", d.db_max_overflow, 0),
            db_statement_timeout_s=_seconds(
                env, "MEDIAGEN_DB_STATEMENT_TIMEOUT_S", d.db_statement_timeout_s
            ),
            db_lock_timeout_s=_seconds(env, "MEDIAGEN_DB_LOCK_TIMEOUT_S", d.db_lock_timeout_s),
            db_idle_in_transaction_timeout_s=_seconds(
                env, "MEDIAGEN_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", d.db_idle_in_transaction_timeout_s
            ),
            redis_url=env.get("REDIS_URL") or None,
            queue_name=_name(env, "MEDIAGEN_QUEUE_NAME", d.queue_name),
            replicate_api_token=env.get("REPLICATE_API_TOKEN") or None,
            replicate_base_url=env.get("REPLICATE_BASE_URL") or None,
            default_model=env.get("REPLICATE_MODEL", d.default_model) or d.default_model,
            allowed_models=_list(env, "MEDIAGEN_ALLOWED_MODELS"),
            poll_interval_s=poll_interval_s,
            poll_interval_max_s=poll_interval_max_s,
            provider_read_timeout_s=_positive(
                env, "MEDIAGEN_PROVIDER_READ_TIMEOUT_S", d.provider_read_timeout_s
            ),
            webhook_url=env.get("MEDIAGEN_WEBHOOK_URL") or None,
            webhook_fallback_poll_s=_positive(
                env, "MEDIAGEN_WEBHOOK_FALLBACK_POLL_S", d.webhook_fallback_poll_s
            ),
            webhook_tolerance_s=_positive(
                env, "MEDIAGEN_WEBHOOK_TOLERANCE_S", d.webhook_tolerance_s
            ),
            webhook_max_body_bytes=_count(
                env, "MEDIAGEN_WEBHOOK_MAX_BODY_BYTES", d.webhook_max_body_bytes
            ),
            replicate_webhook_secret=env.get("MEDIAGEN_REPLICATE_WEBHOOK_SECRET") or None,
            ambiguous_settle_s=_seconds(env, "MEDIAGEN_AMBIGUOUS_SETTLE_S", d.ambiguous_settle_s),
            provider_budget_prefix=_name(
                env, "MEDIAGEN_PROVIDER_BUDGET_PREFIX", d.provider_budget_prefix
            ),
            provider_creates_per_min=_seconds(
                env, "MEDIAGEN_PROVIDER_CREATES_PER_MIN", d.provider_creates_per_min
            ),
            provider_requests_per_min=_seconds(
                env, "MEDIAGEN_PROVIDER_REQUESTS_PER_MIN", d.provider_requests_per_min
            ),
            provider_budget_max_wait_s=_seconds(
                env, "MEDIAGEN_PROVIDER_BUDGET_MAX_WAIT_S", d.provider_budget_max_wait_s
            ),
            provider_max_connections=provider_max_connections,
            storage_type=storage_type,
            s3=s3,
            max_output_bytes=_count(env, "MEDIAGEN_MAX_OUTPUT_BYTES", d.max_output_bytes),
            max_outputs=_count(env, "MEDIAGEN_MAX_OUTPUTS", d.max_outputs),
            output_hosts=_hosts(env, "MEDIAGEN_OUTPUT_HOSTS", d.output_hosts),
            output_token_hosts=_hosts(env, "MEDIAGEN_OUTPUT_TOKEN_HOSTS", d.output_token_hosts),
            download_timeout_s=_positive(env, "MEDIAGEN_DOWNLOAD_TIMEOUT_S", d.download_timeout_s),
            download_min_rate_bps=_seconds(
                env, "MEDIAGEN_DOWNLOAD_MIN_RATE_BPS", d.download_min_rate_bps
            ),
            worker_concurrency=_count(env, "MEDIAGEN_WORKER_CONCURRENCY", d.worker_concurrency),
            lease_s=_positive(env, "MEDIAGEN_LEASE_S", d.lease_s),
            reconcile_interval_s=_positive(
                env, "MEDIAGEN_RECONCILE_INTERVAL_S", d.reconcile_interval_s
            ),
            max_attempts=_count(env, "MEDIAGEN_MAX_ATTEMPTS", d.max_attempts),
            retry_base_s=retry_base_s,
            retry_max_s=retry_max_s,
            job_timeout_s=_positive(env, "MEDIAGEN_JOB_TIMEOUT_S", d.job_timeout_s),
            shutdown_grace_s=_seconds(env, "MEDIAGEN_SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            estimate_default_s=_positive(env, "MEDIAGEN_ESTIMATE_DEFAULT_S", d.estimate_default_s),
            retention_s=retention_days * DAY_S,
            retention_interval_s=retention_interval_s,
            retention_batch_size=retention_batch_size,
            worker_health_port=_port(env, "MEDIAGEN_WORKER_HEALTH_PORT", d.worker_health_port),
            health_interval_s=_positive(env, "MEDIAGEN_HEALTH_INTERVAL_S", d.health_interval_s),
            health_timeout_s=_positive(env, "MEDIAGEN_HEALTH_TIMEOUT_S", d.health_timeout_s),
            metrics=_bool(env, "MEDIAGEN_METRICS", d.metrics),
            metrics_port=_port(env, "MEDIAGEN_METRICS_PORT", d.metrics_port),
            metrics_query_interval_s=_seconds(
                env, "MEDIAGEN_METRICS_QUERY_INTERVAL_S", d.metrics_query_interval_s
            ),
            emulator_port=_port(env, "MEDIAGEN_EMULATOR_PORT", d.emulator_port),
            emulator_latency_s=_seconds(env, "MEDIAGEN_EMULATOR_LATENCY_S", d.emulator_latency_s),
            emulator_creates_per_min=_seconds(
                env, "MEDIAGEN_EMULATOR_CREATES_PER_MIN", d.emulator_creates_per_min
            ),
            emulator_requests_per_min=_seconds(
                env, "MEDIAGEN_EMULATOR_REQUESTS_PER_MIN", d.emulator_requests_per_min
            ),
            grpc_max_message_bytes=_count(
                env, "MEDIAGEN_GRPC_MAX_MESSAGE_BYTES", d.grpc_max_message_bytes
            ),
            http=http,
            rate_limit_per_s=rate_limit_per_s,
            rate_limit_burst=rate_limit_burst,
            rate_limit_prefix=_name(env, "MEDIAGEN_RATE_LIMIT_PREFIX", d.rate_limit_prefix),
            max_active_jobs=max_active_jobs,
            max_watch_streams=max_watch_streams,
            watch_sweep_s=_seconds(env, "MEDIAGEN_WATCH_SWEEP_S", d.watch_sweep_s),
            secret_key=env.get("SECRET_KEY", "").strip(),
            media_url_ttl_s=media_url_ttl_s,
            auth=_bool(env, "MEDIAGEN_AUTH", d.auth),
            auth_cache_s=_seconds(env, "MEDIAGEN_AUTH_CACHE_S", d.auth_cache_s),
            auth_reflection=_bool(env, "MEDIAGEN_AUTH_REFLECTION", d.auth_reflection),
            auth_mtls_admins=_list(env, "MEDIAGEN_AUTH_MTLS_ADMINS"),
            auth_mtls_tenants=_list(env, "MEDIAGEN_AUTH_MTLS_TENANTS"),
            log_level="DEBUG" if debug else env.get("MEDIAGEN_LOG_LEVEL", d.log_level).upper(),
            log_format=_choice(env, "MEDIAGEN_LOG_FORMAT", LOG_FORMATS, d.log_format),
        )


def secret_key_problem(settings: Settings) -> str | None:
    """Why ``settings.secret_key`` must not sign anything, or None if it may."""
    if not settings.secret_key:
        return "SECRET_KEY is not set"
    if settings.secret_key in PUBLIC_SECRET_KEYS:
        return f"SECRET_KEY is the public value {settings.secret_key!r}"
    return None

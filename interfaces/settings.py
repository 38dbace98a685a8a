"""Settings read from the environment (``HOSTPLANE_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from domain.instance import UPSTREAMS
from interfaces.logformat import check_log_format

SIGNUP = ("open", "closed")
# The largest non-streamed answer the gateway holds whole (decompressed; it is parsed, and
# released once metered); a larger one is a 502. An embeddings answer of 2,048 inputs × 3,072
# floats as JSON is ~130 MB.
MAX_ANSWER_BYTES = 256 * 1024 * 1024


def check_signup(value: str) -> str:
    if value not in SIGNUP:
        raise ValueError(f"HOSTPLANE_SIGNUP must be one of {', '.join(SIGNUP)}, not {value!r}")
    return value


@dataclass
class Settings:
    database_url: str | None = None
    data_dir: Path = Path("var")
    admin_token: str | None = None
    master_key: str | None = None
    rate_limit_per_minute: int = 60
    read_your_writes_timeout: float = 5.0
    pool_size: int = 10
    # Database outages: how long a request waits for a connection before answering 503, the
    # statement timeout of what requests run (0: none), and how far behind the log a read
    # model may be while /health/ready still answers 200.
    db_connect_timeout: float = 3.0
    statement_timeout_seconds: float = 30.0
    ready_max_lag: int = 10_000
    # Provisioning: the jobs' pace, the deploy deadline and the simulated provider's behaviour.
    provision_interval_seconds: float = 1.0  # 0 turns the provisioning jobs off
    status_sync_seconds: float = 30.0
    deploy_timeout_seconds: float = 900.0
    simulated_deploy_seconds: float = 3.0
    simulated_refuse: frozenset[str] = frozenset()
    simulated_failure_rate: float = 0.0
    simulated_port: int = 0
    webhook_retry_base_seconds: float = 10.0
    webhook_max_age_seconds: float = 86400.0
    webhook_timeout_seconds: float = 5.0
    # Bounded work per request: the longest per-day and per-hour breakdowns, the largest body.
    max_range_days: int = 400
    max_hourly_range_days: int = 31
    # A 10,000-record usage batch is ~4 MB; at the longest request ids and model names (200
    # characters) ~8 MB, and ~30 MB if every one of their characters is \u-escaped.
    max_body_bytes: int = 32 * 1024 * 1024
    # How long an Idempotency-Key claim with nothing saved holds off a retry (a crashed first
    # request's key is free again after it); see interfaces/stores.py IdempotencyStore.
    idempotency_lease_seconds: float = 30.0
    # The gateway: each BYOK vendor's OpenAI-compatible base URL where it differs from the
    # default (domain/instance.py UPSTREAMS), and the timeouts of a call to a target.
    upstream_urls: dict[str, str] = field(default_factory=dict)
    gateway_connect_timeout: float = 5.0
    gateway_first_byte_timeout: float = 60.0
    gateway_total_timeout: float = 600.0
    gateway_max_answer_bytes: int = MAX_ANSWER_BYTES
    # Upstream requests each serving process admits at once, until PUT /capacity sets it.
    max_in_flight: int = 256
    # The window of the gateway's request and token limits (a key's rpm_limit, a tenant's
    # tokens_per_minute), in seconds: 60 counts them per minute as named; tests shorten it.
    limit_window_seconds: int = 60
    # Where the gateway deploys a model for a tenant with on-demand boot on (issue 18 §3).
    on_demand_region: str = "EU"
    on_demand_provider: str = "simulated"
    on_demand_instance_type: str = "text"
    # The response cache of each serving process (interfaces/gateway/cache.py), bounded both ways.
    cache_max_entries: int = 10_000
    cache_max_bytes: int = 64 * 1024 * 1024
    # Requests waiting for a place, per process: how many at most, and for how long.
    queue_max_length: int = 1000
    queue_max_wait_seconds: float = 30.0
    # Users: whether anyone may sign up (a tenant of their own), the JWT signing secret (None:
    # derived from the master key) and sign-in attempts allowed per minute per email and per IP.
    signup: str = "open"
    jwt_secret: str | None = None
    login_per_email_per_minute: int = 10
    login_per_ip_per_minute: int = 60
    # Observability: a token that may read GET /metrics (besides the admin token), and the
    # log's format, "text" (a readable line) or "json" (one object per line).
    metrics_token: str | None = None
    log_format: str = "text"
    # Where ``hostplane status`` finds the running server.
    url: str = "http://127.0.0.1:9090"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("HOSTPLANE_DATABASE_URL") or None,
            data_dir=Path(env.get("HOSTPLANE_DATA_DIR", "var")),
            admin_token=env.get("HOSTPLANE_ADMIN_TOKEN") or None,
            master_key=env.get("HOSTPLANE_MASTER_KEY") or None,
            rate_limit_per_minute=int(env.get("HOSTPLANE_RATE_LIMIT_PER_MINUTE", "60")),
            read_your_writes_timeout=float(env.get("HOSTPLANE_READ_YOUR_WRITES_TIMEOUT", "5")),
            pool_size=int(env.get("HOSTPLANE_POOL_SIZE", "10")),
            db_connect_timeout=float(env.get("HOSTPLANE_DB_CONNECT_TIMEOUT", "3")),
            statement_timeout_seconds=float(env.get("HOSTPLANE_STATEMENT_TIMEOUT_SECONDS", "30")),
            ready_max_lag=int(env.get("HOSTPLANE_READY_MAX_LAG", "10000")),
            provision_interval_seconds=float(env.get("HOSTPLANE_PROVISION_INTERVAL_SECONDS", "1")),
            status_sync_seconds=float(env.get("HOSTPLANE_STATUS_SYNC_SECONDS", "30")),
            deploy_timeout_seconds=float(env.get("HOSTPLANE_DEPLOY_TIMEOUT_SECONDS", "900")),
            simulated_deploy_seconds=float(env.get("HOSTPLANE_SIMULATED_DEPLOY_SECONDS", "3")),
            simulated_refuse=frozenset(
                x.strip() for x in env.get("HOSTPLANE_SIMULATED_REFUSE", "").split(",") if x.strip()
            ),
            simulated_failure_rate=float(env.get("HOSTPLANE_SIMULATED_FAILURE_RATE", "0")),
            simulated_port=int(env.get("HOSTPLANE_SIMULATED_PORT", "0")),
            webhook_retry_base_seconds=float(env.get("HOSTPLANE_WEBHOOK_RETRY_BASE_SECONDS", "10")),
            webhook_max_age_seconds=float(env.get("HOSTPLANE_WEBHOOK_MAX_AGE_SECONDS", "86400")),
            webhook_timeout_seconds=float(env.get("HOSTPLANE_WEBHOOK_TIMEOUT_SECONDS", "5")),
            max_range_days=int(env.get("HOSTPLANE_MAX_RANGE_DAYS", "400")),
            max_hourly_range_days=int(env.get("HOSTPLANE_MAX_HOURLY_RANGE_DAYS", "31")),
            max_body_bytes=int(env.get("HOSTPLANE_MAX_BODY_BYTES", str(32 * 1024 * 1024))),
            idempotency_lease_seconds=float(env.get("HOSTPLANE_IDEMPOTENCY_LEASE_SECONDS", "30")),
            upstream_urls={
                vendor: env[f"HOSTPLANE_UPSTREAM_{vendor.upper()}_URL"]
                for vendor in UPSTREAMS
                if env.get(f"HOSTPLANE_UPSTREAM_{vendor.upper()}_URL")
            },
            gateway_connect_timeout=float(env.get("HOSTPLANE_GATEWAY_CONNECT_TIMEOUT", "5")),
            gateway_first_byte_timeout=float(env.get("HOSTPLANE_GATEWAY_FIRST_BYTE_TIMEOUT", "60")),
            gateway_total_timeout=float(env.get("HOSTPLANE_GATEWAY_TOTAL_TIMEOUT", "600")),
            gateway_max_answer_bytes=int(
                env.get("HOSTPLANE_GATEWAY_MAX_ANSWER_BYTES", str(MAX_ANSWER_BYTES))
            ),
            max_in_flight=int(env.get("HOSTPLANE_MAX_IN_FLIGHT", "256")),
            limit_window_seconds=max(1, int(env.get("HOSTPLANE_LIMIT_WINDOW_SECONDS", "60"))),
            on_demand_region=env.get("HOSTPLANE_ON_DEMAND_REGION", "EU"),
            on_demand_provider=env.get("HOSTPLANE_ON_DEMAND_PROVIDER", "simulated"),
            on_demand_instance_type=env.get("HOSTPLANE_ON_DEMAND_INSTANCE_TYPE", "text"),
            cache_max_entries=int(env.get("HOSTPLANE_CACHE_MAX_ENTRIES", "10000")),
            cache_max_bytes=int(env.get("HOSTPLANE_CACHE_MAX_BYTES", str(64 * 1024 * 1024))),
            queue_max_length=int(env.get("HOSTPLANE_QUEUE_MAX_LENGTH", "1000")),
            queue_max_wait_seconds=float(env.get("HOSTPLANE_QUEUE_MAX_WAIT_SECONDS", "30")),
            signup=check_signup(env.get("HOSTPLANE_SIGNUP", "open")),
            jwt_secret=env.get("HOSTPLANE_JWT_SECRET") or None,
            login_per_email_per_minute=int(env.get("HOSTPLANE_LOGIN_PER_EMAIL_PER_MINUTE", "10")),
            login_per_ip_per_minute=int(env.get("HOSTPLANE_LOGIN_PER_IP_PER_MINUTE", "60")),
            metrics_token=env.get("HOSTPLANE_METRICS_TOKEN") or None,
            log_format=check_log_format(env.get("HOSTPLANE_LOG_FORMAT", "text")),
            url=env.get("HOSTPLANE_URL") or "http://127.0.0.1:9090",
        )

    def upstream_url(self, vendor: str) -> str:
        """A BYOK vendor's OpenAI-compatible base URL (``HOSTPLANE_UPSTREAM_<VENDOR>_URL``)."""
        return (self.upstream_urls.get(vendor) or UPSTREAMS[vendor]).rstrip("/")

    def for_operator(self) -> Settings:
        """For the operator's commands (``projections rebuild``, ``export``, ``reconcile``):
        no statement timeout, since a rebuild's index builds or a whole store's reconciliation
        may rightly take longer than any request."""
        return replace(self, statement_timeout_seconds=0.0)

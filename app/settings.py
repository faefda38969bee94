"""Runtime configuration, read from `GATEWAY_*` environment variables and a `.env` file."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from decimal import Decimal
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.net.ssrf import URLRefused, check_without_dns

# Time a request needs after its deadline to store its images and settle: a hold must last this
# much longer than GATEWAY_REQUEST_DEADLINE_S.
SETTLE_MARGIN_S = 60


class Settings(BaseSettings):
    # Settings hold credentials (tokens, keys, URLs with passwords): a refused value is named, never echoed.
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Unset (or empty) = the SQLite file `gateway.db` inside GATEWAY_DATA_DIR, so moving the data
    # directory (a container's volume, say) moves the database with it; see _sqlite_in_data_dir.
    database_url: str = ""
    admin_token: str | None = None
    # Bearer token that GET /metrics requires; unset = metrics are open.
    metrics_token: str | None = Field(default=None, repr=False)
    # Fernet keys (comma-separated, newest first) that encrypt channel secrets in the database;
    # unset = stored in plain text. See app/catalog/secrets.py for rotation.
    secret_key: str | None = Field(default=None, repr=False)
    data_dir: Path = Path("./data")
    blob_url: str | None = None
    redis_url: str | None = None
    public_url: str | None = None
    callback_allow_networks: str = ""
    run_worker: bool = True
    auto_migrate: bool = True
    # DEBUG | INFO | WARNING | ERROR (any case): JSON lines on stderr from this level up, for
    # `image-gateway serve` and `worker`. INFO has one access line per request.
    log_level: str = "INFO"

    # PostgreSQL connections per process: the pool, and how far past it a burst may go. Mind the
    # server's max_connections across every replica and worker.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    # How long a catalog/channel/key snapshot may be served from memory. Admin changes made on
    # another replica become visible after at most this long (the contract promises 5 s).
    cache_ttl_s: float = Field(default=2.0, ge=0)
    # A hold still open after this long belongs to a crashed process; the sweeper releases it.
    hold_timeout_s: float = Field(default=900.0, gt=0)
    sweep_interval_s: float = Field(default=30.0, gt=0)
    # Largest request body accepted on the caller API (prompts are text; images never come in).
    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    # Overall budget for one synchronous generation, failover included.
    request_deadline_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    # Circuit breaker: consecutive failures that open a channel, and the first cooldown (it
    # doubles on every failed probe, up to 5 minutes).
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0)
    # A channel whose upstream refuses its credentials (401/403) or no longer knows its model
    # (404) on this many calls in a row is disabled, with the reason and an alert, until an
    # operator re-enables it. 0 = never disable automatically.
    auto_disable_after: int = Field(default=3, ge=0, le=1000)
    # Tasks: results, files and metadata are kept this long, then deleted with their files.
    retention_days: float = Field(default=7.0, gt=0)
    # Signed file URLs stay valid this long after they are issued.
    file_url_ttl_s: int = Field(default=24 * 3600, gt=0)
    # A worker holds a task for this long and renews it while working; a crashed worker's task
    # is taken over once its lease lapses.
    task_lease_s: float = Field(default=30.0, gt=0)
    # Callback retries wait 1, 6, 30, 180, 720, 2160 and 4320 times this (10 s: up to 12 h).
    callback_retry_base_s: float = Field(default=10.0, gt=0)
    # On shutdown, running tasks get this long to finish before they go back to the queue.
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    # Tasks one worker runs at once.
    worker_concurrency: int = Field(default=4, ge=1)
    # How often an idle worker looks for queued tasks and due callbacks.
    worker_poll_s: float = Field(default=0.5, gt=0)
    # Upstream connections one process may hold open at once. It only has to stay above the
    # concurrency the process serves: per-channel max_concurrency is the limit operators tune.
    upstream_max_connections: int = Field(default=10_000, ge=1)
    # How long a request waits for a slot on a channel at its max_concurrency before moving on.
    channel_slot_wait_s: float = Field(default=2.0, ge=0)
    # Redis (GATEWAY_REDIS_URL): connections one process may hold, how long a call waits for one
    # when all are busy, and how long connecting or any one call may take before Redis counts as
    # down (a limited key's request is then refused with 503). Mind Redis's maxclients across
    # every replica and worker.
    redis_max_connections: int = Field(default=100, ge=1)
    redis_pool_wait_s: float = Field(default=5.0, gt=0)
    redis_timeout_s: float = Field(default=2.0, gt=0)
    # Finance: what one credit is worth in the currency of the providers' invoices, so reports can
    # show revenue (credits × this) next to upstream cost (the seed prices 4–12 credits per image
    # at about $0.04–$0.12).
    credit_value: Decimal = Field(default=Decimal("0.01"), ge=0)
    # Alerts (low balance, budget thresholds, a channel disabled automatically): signed webhook
    # events POSTed here, with the callbacks' SSRF rules and retry schedule. Unset = no alerts sent.
    alert_url: str | None = None
    # The `whsec_…` Standard Webhooks secret that signs alerts (required with GATEWAY_ALERT_URL).
    alert_secret: str | None = Field(default=None, repr=False)
    # A YAML file of models, channels and operators (docs/config.md) applied at every start of the
    # API, after migrations, like `image-gateway config apply FILE` without --prune. Idempotent, so
    # every replica may apply it; a bad file stops the start. Unset or empty = none.
    config_file: Path | None = None

    @field_validator("admin_token")
    @classmethod
    def _blank_token_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("config_file", mode="before")
    @classmethod
    def _blank_config_file_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"GATEWAY_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not {value!r}")
        return level

    @field_validator("metrics_token")
    @classmethod
    def _blank_metrics_token_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("secret_key")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from cryptography.fernet import Fernet  # only when a key is set: the CLI supervisor stays light

        for number, key in enumerate(value.split(","), start=1):
            try:
                Fernet(key.strip())
            except ValueError:
                raise ValueError(
                    f"GATEWAY_SECRET_KEY: key #{number} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    'generate one with python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())")'
                ) from None
        return value

    @property
    def secret_keys(self) -> list[str]:
        """The Fernet keys of GATEWAY_SECRET_KEY, newest (the one that encrypts) first."""
        return [key.strip() for key in self.secret_key.split(",")] if self.secret_key else []

    @field_validator("callback_allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        for part in _split(value):
            ipaddress.ip_network(part, strict=False)
        return value

    @model_validator(mode="after")
    def _sqlite_in_data_dir(self) -> Settings:
        # The commands create GATEWAY_DATA_DIR before they open the database (app/cli/running.py).
        if not self.database_url.strip():
            self.database_url = f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').as_posix()}"
        return self

    @model_validator(mode="after")
    def _holds_outlast_the_request(self) -> Settings:
        # A hold that lapses while its request still runs is released by the sweeper; the images
        # the upstream then delivers cannot be charged (a 500 after the upstream was paid). Task
        # holds last the retention period instead (app/tasks/service.py).
        needed = self.request_deadline_s + SETTLE_MARGIN_S
        for name, seconds in (
            ("GATEWAY_HOLD_TIMEOUT_S", self.hold_timeout_s),
            ("GATEWAY_RETENTION_DAYS", self.retention_days * 86_400),
        ):
            if seconds < needed:
                raise ValueError(
                    f"{name} ({seconds:g} s) must be at least GATEWAY_REQUEST_DEADLINE_S "
                    f"({self.request_deadline_s:g} s) + {SETTLE_MARGIN_S} s: a hold must outlast its request, "
                    "or a request that ran to its deadline can no longer be charged."
                )
        return self

    @model_validator(mode="after")
    def _alerts_are_signed(self) -> Settings:
        # Refused at start, not at the first alert: an unsigned, malformed or SSRF-refused alert URL
        # would otherwise only show up as failed deliveries, long after the crossing they announce.
        self.alert_url = (self.alert_url or "").strip() or None
        self.alert_secret = (self.alert_secret or "").strip() or None
        if self.alert_url is None:
            return self
        try:
            check_without_dns(self.alert_url, self.callback_networks)
        except URLRefused as exc:
            raise ValueError(
                f"GATEWAY_ALERT_URL: {exc} (a private or loopback receiver needs its network in "
                "GATEWAY_CALLBACK_ALLOW_NETWORKS)"
            ) from None
        if self.alert_secret is None:
            raise ValueError(
                f"GATEWAY_ALERT_URL needs GATEWAY_ALERT_SECRET, the secret that signs alerts. {_WHSEC_HINT}"
            )
        if not _is_webhook_secret(self.alert_secret):
            raise ValueError(f"GATEWAY_ALERT_SECRET is not a Standard Webhooks secret. {_WHSEC_HINT}")
        return self

    @property
    def callback_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in _split(self.callback_allow_networks)]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_WHSEC_HINT = (
    "It is 'whsec_' followed by the base64 of 16 to 64 random bytes; generate one with "
    "python -c \"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
)


def _is_webhook_secret(secret: str) -> bool:
    """What app/callbacks/signing.py signs with (that module sits above settings), checked strictly."""
    if not secret.startswith("whsec_"):
        return False
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return False
    return 16 <= len(key) <= 64


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]

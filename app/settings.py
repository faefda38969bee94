"""Runtime configuration, read from `GATEWAY_*` environment variables and a `.env` file."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./data/gateway.db"
    admin_token: str | None = None
    data_dir: Path = Path("./data")
    blob_url: str | None = None
    redis_url: str | None = None
    public_url: str | None = None
    callback_allow_networks: str = ""
    run_worker: bool = True
    auto_migrate: bool = True

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

    @field_validator("admin_token")
    @classmethod
    def _blank_token_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("callback_allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        for part in _split(value):
            ipaddress.ip_network(part, strict=False)
        return value

    @property
    def callback_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in _split(self.callback_allow_networks)]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]

"""Everything one gateway process holds for its lifetime, built and torn down by the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
from redis.asyncio import Redis
from starlette.requests import Request

from app.alerts.delivery import AlertEndpoint, AlertSender
from app.catalog.secrets import SecretCipher
from app.catalog.snapshot import CatalogCache
from app.db import Database
from app.files.blobs import open_blob_store
from app.files.service import FileStore, load_signing_key
from app.files.signing import UrlSigner
from app.generation.service import GenerationService
from app.keys.auth import KeyCache
from app.keys.limits import KeyLimiter
from app.net.guarded_fetch import GuardedFetcher
from app.observability.metrics import Metrics
from app.observability.redaction import SecretRedactor, redacting_logs
from app.operators.service import OperatorCache
from app.providers.aiohttp_transport import upstream_client
from app.providers.base import ImageProvider
from app.providers.credentials import known_secrets
from app.providers.registry import build_providers
from app.redis_client import open_redis_for
from app.routing.breaker import BreakerPolicy
from app.routing.channel_faults import ChannelFaults
from app.routing.channel_test import ChannelTester
from app.routing.health import HealthStore, MemoryHealthStore, RedisHealthStore
from app.routing.router import ChannelRouter
from app.settings import Settings
from app.specs import CatalogSnapshot
from app.tasks.deps import TaskDeps


@dataclass
class Gateway:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    catalog: CatalogCache
    # Encrypts channel secrets written by the admin API (GATEWAY_SECRET_KEY).
    secrets: SecretCipher
    keys: KeyCache
    # Operator tokens → identities, like `keys` (a revocation clears it on this replica).
    operators: OperatorCache
    providers: dict[str, ImageProvider]
    health: HealthStore
    router: ChannelRouter
    # POST /admin/channels/{id}/test and `image-gateway channels test`.
    channel_tests: ChannelTester
    generation: GenerationService
    files: FileStore
    # Callbacks go to addresses callers chose, image URLs to addresses upstreams chose: a client
    # of their own that ignores proxy settings and carries none of the upstream client's defaults.
    callback_http: httpx.AsyncClient
    metrics: Metrics
    redis: Redis | None = None

    def invalidate_caches(self) -> None:
        """After an admin change: this replica sees it at once, others within the cache TTL."""
        self.catalog.invalidate()
        self.keys.invalidate()
        self.operators.invalidate()


@asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    # Installed first and removed last: whatever the gateway logs meanwhile is scrubbed.
    redactor = SecretRedactor()
    with redacting_logs(redactor):
        async with _open_gateway(settings, redactor) as gateway:
            yield gateway


@asynccontextmanager
async def _open_gateway(settings: Settings, redactor: SecretRedactor) -> AsyncIterator[Gateway]:
    async def learn_secrets(snapshot: CatalogSnapshot) -> None:
        redactor.remember(await known_secrets(snapshot.channels))

    db = Database(settings.database_url, settings.db_pool_size, settings.db_max_overflow)
    # One pooled client for every upstream call; per-channel timeouts are applied per request.
    http = upstream_client(
        max_connections=settings.upstream_max_connections, timeout=httpx.Timeout(120.0, connect=10.0)
    )
    callback_http = httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=httpx.Timeout(15.0))
    # Shared state for several replicas lives in Redis when it is configured: one client (one
    # bounded pool) for the key limiter, the health store and /readyz.
    redis = open_redis_for(settings) if settings.redis_url else None
    limiter = KeyLimiter(redis)
    try:
        secrets = SecretCipher(settings.secret_keys)
        catalog = CatalogCache(db, settings.cache_ttl_s, secrets, on_reload=learn_secrets)
        async with db.sessions() as session:
            signing_key = await load_signing_key(session)
        files = FileStore(
            open_blob_store(settings.blob_url, settings.data_dir),
            UrlSigner(signing_key, settings.file_url_ttl_s),
            timedelta(days=settings.retention_days),
        )
        providers = build_providers(http, GuardedFetcher(callback_http, settings.callback_networks))
        policy = BreakerPolicy(failure_threshold=settings.breaker_failures, base_cooldown_s=settings.breaker_cooldown_s)
        health: HealthStore = RedisHealthStore(redis, policy) if redis else MemoryHealthStore(policy)
        metrics = Metrics()
        router = ChannelRouter(
            providers,
            health,
            metrics=metrics,
            max_attempts=settings.max_attempts,
            deadline_s=settings.request_deadline_s,
            slot_wait_s=settings.channel_slot_wait_s,
            faults=ChannelFaults(db, settings.auto_disable_after, catalog.invalidate),
        )
        yield Gateway(
            settings=settings,
            db=db,
            http=http,
            catalog=catalog,
            secrets=secrets,
            keys=KeyCache(db, settings.cache_ttl_s),
            operators=OperatorCache(db, settings.cache_ttl_s),
            providers=providers,
            health=health,
            router=router,
            channel_tests=ChannelTester(db, providers, catalog, secrets),
            generation=GenerationService(db, router, catalog, files, settings.hold_timeout_s, metrics, limiter),
            files=files,
            callback_http=callback_http,
            metrics=metrics,
            redis=redis,
        )
    finally:
        await http.aclose()
        await callback_http.aclose()
        await limiter.aclose()
        if redis is not None:
            await redis.aclose()
        await db.dispose()


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def task_deps(gateway: Gateway) -> TaskDeps:
    """The part of the runtime the task loops use (they never see the whole of it)."""
    settings = gateway.settings
    return TaskDeps(
        db=gateway.db,
        generation=gateway.generation,
        files=gateway.files,
        callback_http=gateway.callback_http,
        callback_networks=settings.callback_networks,
        callback_retry_base_s=settings.callback_retry_base_s,
        public_url=settings.public_url,
        task_lease_s=settings.task_lease_s,
        worker_poll_s=settings.worker_poll_s,
        worker_concurrency=settings.worker_concurrency,
        hold_timeout_s=settings.hold_timeout_s,
        sweep_interval_s=settings.sweep_interval_s,
        alerts=alert_sender(gateway),
    )


def alert_sender(gateway: Gateway) -> AlertSender | None:
    """Alerts go out like callbacks: the same client, SSRF allow-list and retry schedule."""
    settings = gateway.settings
    if settings.alert_url is None or settings.alert_secret is None:
        return None
    return AlertSender(
        gateway.db,
        gateway.callback_http,
        AlertEndpoint(settings.alert_url, settings.alert_secret),
        settings.callback_networks,
        settings.callback_retry_base_s,
    )

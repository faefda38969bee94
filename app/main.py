"""The ASGI application: `create_app(settings)`, whose lifespan owns every engine and client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.admin.accounts import router as accounts_admin
from app.admin.alerts import router as alerts_admin
from app.admin.audit import router as audit_admin
from app.admin.billing import router as billing_admin
from app.admin.catalog import router as catalog_admin
from app.admin.config_apply import apply_at_start
from app.admin.keys import router as keys_admin
from app.admin.operators import router as operators_admin
from app.admin.reconcile import router as reconcile_admin
from app.admin.requests import router as requests_admin
from app.api import caller, files, google_relay, health, images, metrics_route, tasks
from app.api.gemini_wire import GenerateContentBody
from app.api.google_wire import PredictBody
from app.api.unified_wire import ImagesGenerationBody
from app.http.deps import CALLER_SECURITY, GOOGLE_SECURITY, METRICS_SECURITY
from app.http.docs import install_docs
from app.http.errors import install_error_handlers
from app.http.middleware import RequestIdMiddleware
from app.memory import tune_malloc
from app.observability.logs import quiet_secret_bearing_loggers
from app.observability.startup import log_startup
from app.runtime import open_gateway, task_deps
from app.settings import Settings
from app.tasks.background import Background

DESCRIPTION = """
One endpoint for every image-generation model the company pays for. Call
`POST /v1/images/generations` with a gateway key (`Authorization: Bearer igw_…`); the gateway
holds credits, routes to an upstream channel, and charges
`credits_per_image × model multiplier × channel multiplier` for each image delivered.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    quiet_secret_bearing_loggers()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_gateway(settings) as gateway:
            app.state.gateway = gateway
            # GATEWAY_CONFIG_FILE, before the startup line counts the channels it may add.
            await apply_at_start(settings, gateway.db, gateway.secrets)
            gateway.invalidate_caches()
            await log_startup(settings, gateway.catalog.get, {getattr(r, "path", "") for r in app.routes})
            background = Background(task_deps(gateway), run_worker=settings.run_worker)
            background.start()
            try:
                yield
            finally:
                await background.stop(settings.shutdown_grace_s)

    # /docs is served from the package's own assets (app/http/docs.py), not FastAPI's CDN page.
    app = FastAPI(
        title="Image Gateway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    # Each router with the credentials it takes, as /openapi.json declares them (app/http/deps.py);
    # the admin routers' guard declares the admin token itself.
    for router, security in (
        (images.router, CALLER_SECURITY),
        (tasks.router, CALLER_SECURITY),
        (files.router, CALLER_SECURITY),
        (google_relay.router, GOOGLE_SECURITY),
        (caller.router, CALLER_SECURITY),
        (health.router, []),
        (metrics_route.router, METRICS_SECURITY),
    ):
        app.include_router(router, dependencies=security)
    for router in (
        accounts_admin,
        keys_admin,
        catalog_admin,
        billing_admin,
        reconcile_admin,
        requests_admin,
        alerts_admin,
        operators_admin,
        audit_admin,
    ):
        app.include_router(router)
    install_docs(app)
    _document_raw_bodies(app)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that read their JSON themselves (for 413/415 and exact error names) still publish
    their body schema in /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for body_model in (ImagesGenerationBody, PredictBody, GenerateContentBody):
                body_schema = body_model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
                components.update(body_schema.pop("$defs", {}))
                components[body_model.__name__] = body_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (used by `image-gateway serve`), in each worker process."""
    tune_malloc()
    return create_app(Settings())

"""`/docs`: Swagger UI from assets shipped in the package (`static/swagger/`, whose README names
the version and source), never from a public CDN, so the page also works on a network without
internet access. Its Authorize button comes from the security schemes declared in `deps.py`.

ReDoc (`/redoc`) is off: a second viewer would mean vendoring another megabyte of JavaScript (and
its web fonts) for the same document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

SWAGGER_DIR = Path(__file__).parent / "static" / "swagger"
DOCS = "/docs"
ASSETS = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Serve `/docs`, its assets and its OAuth2 redirect page; the app is built with
    `docs_url=None, redoc_url=None` so FastAPI's CDN-loading page is not served too."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_DIR), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that mounts the gateway under a prefix, every URL the page loads carries it.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            # No badge fetched from validator.swagger.io: nothing on the page leaves the gateway.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT, oauth2_redirect, include_in_schema=False)

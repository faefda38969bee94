"""/docs works on a network without internet access and has an Authorize button.

The page loads Swagger UI from the gateway itself (app/http/static/swagger/, the files recorded in
its README), and /openapi.json declares the credentials each route takes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from pathlib import Path

import pytest

from app.http.docs import SWAGGER_DIR
from tests.support.harness import Harness

ROOT = Path(__file__).resolve().parent.parent
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@sqlite_only
async def test_docs_loads_only_assets_the_gateway_serves_itself(gw: Harness) -> None:
    page = await gw.http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "://" not in html  # no CDN, no validator badge: nothing leaves the gateway
    assert '"validatorUrl": null' in html
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert sorted(loaded) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    ]
    recorded = (SWAGGER_DIR / "README.md").read_text()
    for url in loaded:
        response = await gw.http.get(url)
        assert response.status_code == 200, url
        assert CONTENT_TYPES[Path(url).suffix] in response.headers["content-type"], url
        if url.startswith("/docs/assets/"):
            # The very files the README names, with the checksums it records.
            assert hashlib.sha256(response.content).hexdigest() in recorded, url
    assert b"SwaggerUIBundle" in (await gw.http.get("/docs/assets/swagger-ui-bundle.js")).content
    assert (await gw.http.get("/docs/oauth2-redirect")).status_code == 200
    # ReDoc would load from a CDN: it is off.
    assert (await gw.http.get("/redoc")).status_code == 404


def test_the_swagger_assets_ship_in_the_wheel() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["app.http"]
    shipped = [path.relative_to(ROOT / "app" / "http").as_posix() for path in SWAGGER_DIR.iterdir()]
    assert {"static/swagger/swagger-ui-bundle.js", "static/swagger/swagger-ui.css"} <= set(shipped)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


@sqlite_only
async def test_openapi_declares_the_credentials_every_route_takes(gw: Harness) -> None:
    document = (await gw.http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert {name: (s["type"], s.get("scheme") or s.get("name")) for name, s in schemes.items()} == {
        "AdminToken": ("http", "bearer"),
        "GatewayKey": ("http", "bearer"),
        "GoogleApiKey": ("apiKey", "x-goog-api-key"),
        "MetricsToken": ("http", "bearer"),
    }
    security = {
        (method.upper(), path): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    admin = {route: s for route, s in security.items() if route[1].startswith("/admin/")}
    assert len(admin) > 10
    assert {route: s for route, s in admin.items() if s != [{"AdminToken": []}]} == {}
    assert security[("POST", "/v1/images/generations")] == [{"GatewayKey": []}]
    assert security[("GET", "/v1/models")] == [{"GatewayKey": []}]
    # The Google relay takes either; a list of requirements is an OR.
    assert security[("POST", "/v1beta/models/{model}:predict")] == [{"GoogleApiKey": []}, {"GatewayKey": []}]
    assert security[("GET", "/metrics")] == [{"MetricsToken": []}]
    # Only the probes are open.
    assert sorted(route for route, s in security.items() if not s) == [("GET", "/healthz"), ("GET", "/readyz")]


@sqlite_only
async def test_the_declared_schemes_refuse_nothing_themselves(gw: Harness) -> None:
    # The contract's error bodies, as before the schemes were declared (never FastAPI's own 403).
    for headers in ({}, {"authorization": "Basic YWRtaW4="}, {"authorization": "Bearer wrong"}):
        refused = await gw.http.get("/admin/accounts", headers=headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_admin_token"), headers
    for headers in ({}, {"authorization": "Token igw_x"}):
        refused = await gw.http.get("/v1/models", headers=headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key"), headers
    _, key = await gw.account_with_key()
    relayed = await gw.http.post(
        "/v1beta/models/imagen4:predict",
        json={"instances": [{"prompt": "a lighthouse"}], "parameters": {"sampleCount": 1}},
        headers={"x-goog-api-key": key},
    )
    assert relayed.status_code == 200, relayed.text

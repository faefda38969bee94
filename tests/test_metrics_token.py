"""GET /metrics behind GATEWAY_METRICS_TOKEN: a scraper without the token learns nothing."""

from __future__ import annotations

import pytest

from app.settings import Settings
from tests.support.harness import Harness, running_app

TOKEN = "scrape-me-0f3a9c"


async def test_metrics_are_open_without_a_token(gw: Harness) -> None:
    response = await gw.http.get("/metrics")
    assert response.status_code == 200
    assert "gateway_http_requests_total" in response.text


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", "Bearer"],
)
async def test_metrics_refuse_a_missing_or_wrong_token(settings: Settings, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    async with running_app(settings.model_copy(update={"metrics_token": TOKEN})) as gw:
        response = await gw.http.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_metrics_token"
    assert "gateway_" not in response.text


async def test_metrics_answer_with_the_token(settings: Settings) -> None:
    async with running_app(settings.model_copy(update={"metrics_token": TOKEN})) as gw:
        response = await gw.http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "gateway_http_requests_total" in response.text


def test_a_blank_metrics_token_leaves_metrics_open() -> None:
    assert Settings(metrics_token="  ", _env_file=None).metrics_token is None

"""Every bad input gets the documented 4xx naming the problem, and costs nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.harness import Harness

BAD_BODIES: list[tuple[str, Any, int, str, str | None]] = [
    # (case, body, status, code, param)
    ("missing prompt", {"model": "imagen4"}, 400, "invalid_request", "prompt"),
    ("empty prompt", {"prompt": ""}, 400, "invalid_value", "prompt"),
    ("blank prompt", {"prompt": "   "}, 400, "invalid_value", "prompt"),
    ("huge prompt", {"prompt": "x" * 5000}, 400, "invalid_value", "prompt"),
    ("prompt not a string", {"prompt": 12}, 400, "invalid_value", "prompt"),
    ("n as string", {"prompt": "x", "n": "2"}, 400, "invalid_value", "n"),
    ("n zero", {"prompt": "x", "n": 0}, 400, "invalid_value", "n"),
    ("n above model max", {"prompt": "x", "n": 5}, 400, "invalid_value", "n"),
    ("n and num_images disagree", {"prompt": "x", "n": 1, "num_images": 2}, 400, "invalid_value", "n"),
    ("n is bool", {"prompt": "x", "n": True}, 400, "invalid_value", "n"),
    ("negative seed", {"prompt": "x", "seed": -1}, 400, "invalid_value", "seed"),
    ("seed too big", {"prompt": "x", "seed": 4294967296}, 400, "invalid_value", "seed"),
    ("seed float", {"prompt": "x", "seed": 1.5}, 400, "invalid_value", "seed"),
    ("unknown model", {"prompt": "x", "model": "dall-e-9"}, 404, "model_not_found", "model"),
    ("unknown field", {"prompt": "x", "colour": "red"}, 400, "invalid_request", "colour"),
    ("bad aspect ratio", {"prompt": "x", "aspect_ratio": "2:1"}, 400, "invalid_value", "aspect_ratio"),
    ("bad image size", {"prompt": "x", "image_size": "4K"}, 400, "invalid_value", "image_size"),
    ("unsupported WxH", {"prompt": "x", "size": "512x512"}, 400, "invalid_value", "size"),
    (
        "2K on fast model",
        {"prompt": "x", "model": "imagen4-fast", "image_size": "2K"},
        400,
        "invalid_value",
        "image_size",
    ),
    (
        "size contradicts ratio",
        {"prompt": "x", "size": "1024x1024", "aspect_ratio": "16:9"},
        400,
        "invalid_value",
        "size",
    ),
    (
        "seed unsupported by model",
        {"prompt": "x", "model": "grok-imagine", "seed": 3},
        400,
        "unsupported_parameter",
        "seed",
    ),
    ("quality unsupported", {"prompt": "x", "quality": "high"}, 400, "unsupported_parameter", "quality"),
    ("style present", {"prompt": "x", "style": "vivid"}, 400, "unsupported_parameter", "style"),
    ("stream true", {"prompt": "x", "stream": True}, 400, "unsupported_parameter", "stream"),
    ("bad output format", {"prompt": "x", "output_format": "gif"}, 400, "invalid_value", "output_format"),
    ("bad response format", {"prompt": "x", "response_format": "blob"}, 400, "invalid_value", "response_format"),
    (
        "bad person generation",
        {"prompt": "x", "person_generation": "everyone"},
        400,
        "invalid_value",
        "person_generation",
    ),
    ("metadata not strings", {"prompt": "x", "metadata": {"a": 1}}, 400, "invalid_value", "metadata.a"),
    (
        "too much metadata",
        {"prompt": "x", "metadata": {str(i): "v" for i in range(17)}},
        400,
        "invalid_value",
        "metadata",
    ),
    ("body is a list", ["prompt"], 400, "invalid_request", None),
]


async def _assert_costs_nothing(gw: Harness, account_id: str) -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")
    export = (await gw.admin("GET", "/admin/usage/export")).text.strip().splitlines()
    assert len(export) == 1, "a rejected request must leave no usage record"
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize(("case", "body", "status", "code", "param"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_body(gw: Harness, case: str, body: Any, status: int, code: str, param: str | None) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post("/v1/images/generations", json=body, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]
    if param:
        assert param.split(".")[0] in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    await _assert_costs_nothing(gw, account_id)


@pytest.mark.parametrize(
    ("case", "content", "headers", "status", "code"),
    [
        ("broken json", b'{"prompt": "x",', {"content-type": "application/json"}, 400, "invalid_request"),
        ("empty body", b"", {"content-type": "application/json"}, 400, "invalid_request"),
        ("wrong content type", b'{"prompt":"x"}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (
            "form body",
            b"prompt=x",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (
            "oversized body",
            b'{"prompt": "' + b"x" * 300_000 + b'"}',
            {"content-type": "application/json"},
            413,
            "request_too_large",
        ),
    ],
)
async def test_bad_raw_body(
    gw: Harness, case: str, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    response = await gw.http.post(
        "/v1/images/generations", content=content, headers={"authorization": f"Bearer {key}", **headers}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    await _assert_costs_nothing(gw, account_id)


async def test_missing_unknown_revoked_and_expired_keys(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    body = {"prompt": "x"}
    cases: dict[str, dict[str, str]] = {
        "missing": {},
        "not bearer": {"authorization": f"Basic {key}"},
        "unknown": {"authorization": "Bearer igw_not-a-real-key"},
    }
    for case, headers in cases.items():
        response = await gw.http.post("/v1/images/generations", json=body, headers=headers)
        assert response.status_code == 401, case
        assert response.json()["error"]["code"] == "invalid_api_key"

    keys = (await gw.admin("GET", "/admin/keys", params={"account_id": account_id})).json()["data"]
    assert (await gw.admin("DELETE", f"/admin/keys/{keys[0]['id']}")).status_code == 200
    revoked = await gw.generate(key, body)
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["error"]["message"]

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired_key = await gw.create_key(account_id, expires_at=past)
    expired = await gw.generate(expired_key, body)
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
    await _assert_costs_nothing(gw, account_id)


async def test_unknown_route_is_json_404(gw: Harness) -> None:
    response = await gw.http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"

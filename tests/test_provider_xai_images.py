"""The `xai-images` adapter: pure translation against xAI's documented wire format, then the real
gateway in front of a fake xAI API on 127.0.0.1 (on SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.catalog.defaults import extra_first_start_channels
from app.images import AspectRatio, Base64Text, ImageRequest, ImageSize
from app.providers.errors import UpstreamRejected
from app.providers.xai_images import (
    DEFAULT_BASE_URL,
    XAIImagesProvider,
    build_body,
    call_sizes,
    cost_of,
    generations_url,
    unsupported_parameters,
    without_data_url_prefix,
)
from app.specs import ChannelSpec
from tests.support.fakes.xai import GENERATIONS, FakeXAI, fake_xai, tiny_jpeg_b64
from tests.support.harness import Harness

API_KEY = "xai-test-canary-5e4d3c2b1a09f8e7"
UPSTREAM = "grok-imagine-image"


# --- pure translation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect_ratio", "image_size", "resolution"),
    [("1:1", "1K", "1k"), ("16:9", "1K", "1k"), ("9:16", "2K", "2k"), ("3:4", "1K", "1k"), ("4:3", "2K", "2k")],
)
def test_body_always_names_the_aspect_ratio_and_resolution(
    aspect_ratio: AspectRatio, image_size: ImageSize, resolution: str
) -> None:
    request = ImageRequest(model="grok-imagine", prompt="a fox", n=3, aspect_ratio=aspect_ratio, image_size=image_size)
    assert unsupported_parameters(request, UPSTREAM) == []
    assert build_body(request, UPSTREAM, 3) == {
        "model": UPSTREAM,
        "prompt": "a fox",
        "n": 3,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
        "response_format": "b64_json",
    }


def test_more_than_ten_images_are_several_calls() -> None:
    assert call_sizes(1) == [1]
    assert call_sizes(10) == [10]
    assert call_sizes(25) == [10, 10, 5]


def test_quality_is_sent_only_to_the_model_that_prices_by_it() -> None:
    request = ImageRequest(model="m", prompt="p", extra={"quality": "high"})
    for model in ("grok-imagine-image", "grok-imagine-image-pro", "grok-imagine-image-quality"):
        assert unsupported_parameters(request, model) == ["quality"]
    assert unsupported_parameters(request, "grok-imagine-image-2.0") == []
    assert build_body(request, "grok-imagine-image-2.0", 1)["quality"] == "high"
    wrong = ImageRequest(model="m", prompt="p", extra={"quality": "hd"})
    assert unsupported_parameters(wrong, "grok-imagine-image-2.0") == ["quality"]


def test_parameters_xai_has_no_field_for_are_refused() -> None:
    request = ImageRequest(
        model="m",
        prompt="p",
        seed=7,
        negative_prompt="fog",
        person_generation="allow_adult",
        output_format="jpeg",
        extra={"background": "opaque"},
    )
    assert unsupported_parameters(request, UPSTREAM) == [
        "seed",
        "negative_prompt",
        "person_generation",
        "output_format",
        "background",
    ]


def test_empty_base_url_means_xais_public_api() -> None:
    assert generations_url("") == "https://api.x.ai/v1/images/generations"
    assert DEFAULT_BASE_URL == "https://api.x.ai/v1"
    assert generations_url("https://relay.example/xai/v1/") == "https://relay.example/xai/v1/images/generations"


def test_data_url_prefix_is_stripped() -> None:
    plain = Base64Text.of(tiny_jpeg_b64())
    assert without_data_url_prefix(Base64Text.of(f"data:image/jpeg;base64,{tiny_jpeg_b64()}")) == plain
    assert without_data_url_prefix(plain) is plain


def test_ticks_are_usd_rounded_half_up_to_four_places() -> None:
    assert cost_of([{"cost_in_usd_ticks": 200_000_000}]) == Decimal("0.0200")
    assert cost_of([{"cost_in_usd_ticks": 123_456_789}]) == Decimal("0.0123")
    assert cost_of([{"cost_in_usd_ticks": 500_000}]) == Decimal("0.0001")  # 0.00005 rounds up
    assert cost_of([{"cost_in_usd_ticks": 499_999}]) == Decimal("0.0000")
    assert cost_of([{"cost_in_usd_ticks": 700_000}, {"cost_in_usd_ticks": 700_000}]) == Decimal("0.0001")
    assert cost_of([None, {"other": 1}]) is None


# --- the adapter against the fake, without the gateway ---------------------------------------------


@pytest.fixture
def xai() -> Iterator[FakeXAI]:
    with fake_xai() as fake:
        yield fake


@pytest.fixture
def second_xai() -> Iterator[FakeXAI]:
    with fake_xai() as fake:
        yield fake


def _spec(base_url: str) -> ChannelSpec:
    return ChannelSpec(
        id="ch",
        name="xai",
        provider="xai-images",
        base_url=base_url,
        auth={"api_key": API_KEY},
        models={"grok-imagine": UPSTREAM},
        priority=0,
        weight=1,
        multiplier=Decimal(1),
        enabled=True,
        timeout_s=30,
        max_concurrency=None,
    )


async def test_twelve_images_are_two_calls_and_their_costs_add_up(xai: FakeXAI) -> None:
    async with httpx.AsyncClient() as http:
        result = await XAIImagesProvider(http).generate(
            ImageRequest(model="grok-imagine", prompt="p", n=12), _spec(xai.url), UPSTREAM
        )
    assert sorted(r.json["n"] for r in xai.requests) == [2, 10]
    assert len(result.images) == 12
    assert {image.mime_type for image in result.images} == {"image/jpeg"}
    assert result.upstream_cost == Decimal("0.2400")  # 12 × 200,000,000 ticks
    assert result.usage == {"cost_in_usd_ticks": 2_400_000_000}


async def test_a_key_variable_left_unset_is_a_typed_rejection_not_a_crash(
    xai: FakeXAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolved inside a call task, the missing key escaped as an ExceptionGroup: a 500, no failover.
    monkeypatch.delenv("XAI_TEST_UNSET_KEY", raising=False)
    channel = dataclasses.replace(_spec(xai.url), auth={"api_key_env": "XAI_TEST_UNSET_KEY"})
    async with httpx.AsyncClient() as http:
        with pytest.raises(UpstreamRejected, match="XAI_TEST_UNSET_KEY is not set"):
            await XAIImagesProvider(http).generate(
                ImageRequest(model="grok-imagine", prompt="p", n=12), channel, UPSTREAM
            )
    assert xai.requests == []


# --- through the gateway ------------------------------------------------------------------------


async def _xai_channel(gw: Harness, fake: FakeXAI, **fields: Any) -> dict[str, Any]:
    fields.setdefault("models", {"grok-imagine": UPSTREAM})
    return await gw.add_channel(provider="xai-images", base_url=fake.url, auth={"api_key": API_KEY}, **fields)


async def _assert_nothing_charged(gw: Harness, account_id: str, credits: str = "100") -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == (credits, "0")
    assert await gw.ledger_problems() == []


async def _attempts(gw: Harness, request_id: str) -> list[dict[str, Any]]:
    response = await gw.admin("GET", f"/admin/requests/{request_id}")
    assert response.status_code == 200, response.text
    attempts: list[dict[str, Any]] = response.json()["attempts"]
    return attempts


async def test_grok_imagine_is_served_and_the_attempt_keeps_xais_own_cost(gw: Harness, xai: FakeXAI) -> None:
    # The price table says 0.07 an image; xAI's reported cost (0.02 an image) wins.
    await _xai_channel(gw, xai, only=True, costs={UPSTREAM: "0.07"})
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "grok-imagine", "prompt": "a lighthouse", "n": 2, "size": "1408x768"})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": tiny_jpeg_b64(), "mime_type": "image/jpeg"}] * 2
    [sent] = xai.requests
    assert (sent.method, sent.path) == ("POST", GENERATIONS)
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json == {
        "model": UPSTREAM,
        "prompt": "a lighthouse",
        "n": 2,
        "aspect_ratio": "16:9",
        "resolution": "1k",
        "response_format": "b64_json",
    }
    assert (await gw.account(account_id))["balance"] == "90"  # 2 images × 5 credits
    [attempt] = await _attempts(gw, response.json()["id"])
    assert attempt["outcome"] == "succeeded" and attempt["images"] == 2
    assert Decimal(attempt["upstream_cost"]) == Decimal("0.04")
    assert attempt["usage"] == {"cost_in_usd_ticks": 400_000_000}
    assert await gw.ledger_problems() == []


async def test_a_data_url_prefix_is_stripped_before_delivery(gw: Harness, xai: FakeXAI) -> None:
    await _xai_channel(gw, xai, only=True)
    xai.mode = "data_url"
    _, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "grok-imagine", "prompt": "a leaf"})

    assert response.status_code == 200, response.text
    assert response.json()["data"] == [{"b64_json": tiny_jpeg_b64(), "mime_type": "image/jpeg"}]


@pytest.mark.parametrize(
    "body",
    [
        {"seed": 42},
        {"negative_prompt": "fog"},
        {"person_generation": "allow_adult"},
        {"output_format": "jpeg"},
    ],
)
async def test_parameters_xai_cannot_honour_are_400_before_any_hold(
    gw: Harness, xai: FakeXAI, body: dict[str, Any]
) -> None:
    # imagen4 declares seed, negative_prompt and person_generation: the xAI channel is what refuses.
    await _xai_channel(gw, xai, only=True, models={"imagen4": UPSTREAM})
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x", **body})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "unsupported_parameter"
    assert response.json()["error"]["param"] == next(iter(body))
    assert xai.requests == []
    await _assert_nothing_charged(gw, account_id)


async def test_quality_is_refused_except_on_grok_imagine_image_2(gw: Harness, xai: FakeXAI) -> None:
    # gpt-image-1.5-official declares quality, so only the upstream model decides.
    channel = await _xai_channel(gw, xai, only=True, models={"gpt-image-1.5-official": UPSTREAM})
    account_id, key = await gw.account_with_key(credits=100)
    body = {"model": "gpt-image-1.5", "prompt": "x", "quality": "high"}

    refused = await gw.generate(key, body)

    assert refused.status_code == 400, refused.text
    assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == ("unsupported_parameter", "quality")
    assert xai.requests == []
    await _assert_nothing_charged(gw, account_id)

    patched = await gw.admin(
        "PATCH",
        f"/admin/channels/{channel['id']}",
        json={"models": {"gpt-image-1.5-official": "grok-imagine-image-2.0"}},
    )
    assert patched.status_code == 200, patched.text
    served = await gw.generate(key, body)

    assert served.status_code == 200, served.text
    assert xai.requests[0].json["quality"] == "high"
    assert xai.requests[0].json["model"] == "grok-imagine-image-2.0"


@pytest.mark.parametrize(
    ("mode", "outcome", "message"),
    [
        ("401", "rejected", "credentials"),
        # Re-worded for xAI, the upstream's own words kept.
        (
            "403_balance",
            "rejected",
            "run out of credits or be blocked; the operator must top up or fix the channel: Your team",
        ),
        ("429", "failed", "rate limiting"),
        ("529", "failed", "overloaded"),
        ("500", "failed", "failed (500)"),
        ("unsupported_arg", "failed", "Argument not supported: size"),
        ("not_image", "failed", "not a base64 PNG, JPEG or WebP image"),
    ],
)
async def test_channel_problems_fail_over_to_the_next_channel(
    gw: Harness, xai: FakeXAI, second_xai: FakeXAI, mode: str, outcome: str, message: str
) -> None:
    await _xai_channel(gw, xai, only=True, priority=10, name="xai-broken")
    await _xai_channel(gw, second_xai, priority=0, name="xai-spare")
    xai.mode = mode
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "grok-imagine", "prompt": "x"})

    assert response.status_code == 200, response.text
    assert (len(xai.requests), len(second_xai.requests)) == (1, 1)
    assert (await gw.account(account_id))["balance"] == "95"  # one image, charged once
    failed, served = await _attempts(gw, response.json()["id"])
    assert (failed["channel"], failed["outcome"]) == ("xai-broken", outcome)
    assert message in failed["error"]
    assert API_KEY not in str(failed)
    # A 200 the gateway could not use was still generated (and billed) upstream.
    assert failed["possibly_billed"] is (mode == "not_image")
    assert served["channel"] == "xai-spare" and served["upstream_cost"] is not None
    assert await gw.ledger_problems() == []


@pytest.mark.parametrize(("mode", "text"), [("flat_400", "Prompt is too long"), ("nested_400", "n must be between")])
async def test_a_bad_request_is_502_without_failover_in_both_error_shapes(
    gw: Harness, xai: FakeXAI, second_xai: FakeXAI, mode: str, text: str
) -> None:
    await _xai_channel(gw, xai, only=True, priority=10)
    await _xai_channel(gw, second_xai, priority=0)
    xai.mode = mode
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "grok-imagine", "prompt": "x"})

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert text in response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    assert second_xai.requests == []
    await _assert_nothing_charged(gw, account_id)


@pytest.mark.parametrize("mode", ["blocked", "moderation_400"])
async def test_moderation_is_400_moderation_blocked_with_nothing_charged(
    gw: Harness, xai: FakeXAI, second_xai: FakeXAI, mode: str
) -> None:
    await _xai_channel(gw, xai, only=True, priority=10)
    await _xai_channel(gw, second_xai, priority=0)
    xai.mode = mode
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "grok-imagine", "prompt": "something forbidden"})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "moderation_blocked"
    assert second_xai.requests == []  # another channel would block it the same way
    await _assert_nothing_charged(gw, account_id)
    # A 400 refusal made nothing, so reconciliation must not expect it on xAI's bill.
    [attempt] = (await gw.admin("GET", f"/admin/requests/{response.headers['x-request-id']}")).json()["attempts"]
    assert attempt["possibly_billed"] is (mode == "blocked")


async def test_rate_limited_alone_tells_the_caller_when_to_come_back(gw: Harness, xai: FakeXAI) -> None:
    await _xai_channel(gw, xai, only=True)
    xai.mode = "429"
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "grok-imagine", "prompt": "x"})

    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    await _assert_nothing_charged(gw, account_id)


def test_first_start_with_an_xai_key_serves_grok_imagine_from_xai() -> None:
    assert extra_first_start_channels({}) == []
    [channel] = extra_first_start_channels({"XAI_API_KEY": "xai-secret"})
    assert (channel["provider"], channel["base_url"]) == ("xai-images", "")
    assert channel["models"] == {"grok-imagine": "grok-imagine-image"}
    assert channel["auth"] == {"api_key_env": "XAI_API_KEY"}  # the key itself stays in the environment


async def test_an_xai_channel_needs_no_base_url(gw: Harness) -> None:
    channel = await gw.add_channel(
        name="xai", provider="xai-images", auth={"api_key_env": "XAI_API_KEY"}, models={"grok-imagine": UPSTREAM}
    )
    assert channel["base_url"] == ""

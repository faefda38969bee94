"""The `ideogram` adapter: pure translation against Ideogram 3.0's documented wire format, then the
real gateway in front of a fake Ideogram on 127.0.0.1 (SQLite and PostgreSQL): multipart fields,
the catalog's rendering speed, image URLs fetched through the guarded fetcher, unsafe images
withheld and not billed, errors mapped, and URLs into the gateway's own network refused without a
connection (sentinels on loopback only: nothing here connects off this machine)."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.images import AspectRatio, ImageRequest
from app.providers.errors import ContentFiltered, UpstreamRejected, UpstreamRetryable
from app.providers.ideogram import (
    UNSAFE,
    form_fields,
    generate_url,
    out_of_credit,
    parse_answer,
    prompt_refusal,
    unsupported_parameters,
)
from app.settings import Settings
from tests.support.fakes.ideogram import GENERATE, IMAGES, PNG, IdeogramFake, ideogram_error
from tests.support.fakes.upstream import FakeUpstream, Reply
from tests.support.harness import Harness, running_app
from tests.support.sentinel import ConnectionSentinel, watching

API_KEY = "ideogram-test-canary-0b1c2d3e4f5a6978"
MODEL = "ideogram-v3"  # 8 credits per image, rendering speed DEFAULT in the default catalog
SENTINEL_HOST = "127.0.0.3"


# --- pure translation ---------------------------------------------------------------------------


def test_form_fields_follow_ideograms_names_and_the_catalog_option() -> None:
    request = ImageRequest(
        model=MODEL,
        prompt="a poster reading HELLO",
        n=3,
        aspect_ratio="16:9",
        seed=7,
        negative_prompt="blur",
        options={"rendering_speed": "TURBO"},
    )
    assert unsupported_parameters(request) == []
    assert form_fields(request) == [
        ("prompt", "a poster reading HELLO"),
        ("negative_prompt", "blur"),
        ("seed", "7"),
        ("aspect_ratio", "16x9"),  # an x, not a colon
        ("num_images", "3"),
        ("rendering_speed", "TURBO"),
        ("magic_prompt", "OFF"),  # the caller's prompt is sent as written
    ]
    # Without a catalog option the upstream's default speed applies: nothing is invented.
    assert form_fields(ImageRequest(model=MODEL, prompt="p")) == [
        ("prompt", "p"),
        ("resolution", "1024x1024"),
        ("num_images", "1"),
        ("magic_prompt", "OFF"),
    ]


@pytest.mark.parametrize(
    ("ratio", "field"),
    [
        ("1:1", ("resolution", "1024x1024")),  # the canonical 1K square is on Ideogram's list: exact
        ("16:9", ("aspect_ratio", "16x9")),  # 1408x768 is not: Ideogram's own 16x9 size
        ("9:16", ("aspect_ratio", "9x16")),
        ("4:3", ("aspect_ratio", "4x3")),
        ("3:4", ("aspect_ratio", "3x4")),
    ],
)
def test_sizes_are_an_exact_resolution_or_ideograms_ratio(ratio: AspectRatio, field: tuple[str, str]) -> None:
    fields = form_fields(ImageRequest(model=MODEL, prompt="p", aspect_ratio=ratio))
    assert field in fields
    assert not {"aspect_ratio", "resolution"} <= {name for name, _ in fields}  # never both


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"image_size": "2K"}, ["image_size"]),
        ({"person_generation": "allow_adult"}, ["person_generation"]),
        ({"seed": 2**31}, ["seed"]),
        ({"seed": 2**31 - 1}, []),
        ({"output_format": "jpeg"}, ["output_format"]),
        ({"extra": {"quality": "high"}}, ["quality"]),
        ({"n": 9}, ["n"]),
        ({"options": {"rendering_speed": "FLASHY"}}, ["rendering_speed"]),
        ({"options": {"rendering_speed": "QUALITY", "other": "x"}}, []),  # another provider's option
    ],
)
def test_what_ideogram_cannot_honour_is_named(fields: dict[str, Any], refused: list[str]) -> None:
    assert unsupported_parameters(ImageRequest(model=MODEL, prompt="p", **fields)) == refused


def test_an_empty_base_url_is_ideograms_public_api() -> None:
    assert generate_url("") == "https://api.ideogram.ai/v1/ideogram-v3/generate"
    assert generate_url("https://relay.example/ideogram/") == "https://relay.example/ideogram/v1/ideogram-v3/generate"


def test_unsafe_items_are_withheld_and_at_most_n_are_read() -> None:
    answer = {
        "created": "2026-12-02T02:00:00+00:00",
        "data": [
            {"url": "https://ideogram.ai/api/images/ephemeral/a.png", "is_image_safe": True, "seed": 1},
            {"url": "", "is_image_safe": False, "seed": 2},
            {"url": "https://ideogram.ai/api/images/ephemeral/c.png", "is_image_safe": False},
            {"url": "https://ideogram.ai/api/images/ephemeral/d.png", "is_image_safe": True},
        ],
    }
    urls, withheld = parse_answer(orjson.dumps(answer), n=3)
    assert urls == ["https://ideogram.ai/api/images/ephemeral/a.png", None, None]
    assert withheld == [UNSAFE, UNSAFE]


@pytest.mark.parametrize("answer", [{}, {"created": "x", "data": []}, {"data": "nope"}, [1], "ok"])
def test_unexpected_200_shapes_are_retryable(answer: Any) -> None:
    with pytest.raises(UpstreamRetryable, match="upstream"):
        parse_answer(orjson.dumps(answer), n=1)


def test_a_422_is_a_filtered_prompt_and_a_402_is_the_channels_account() -> None:
    refused = prompt_refusal(
        UpstreamRejected("the upstream rejected the request (422): Prompt failed the safety checks", status=422)
    )
    assert isinstance(refused, ContentFiltered) and refused.reasons == ["Prompt failed the safety checks"]
    assert prompt_refusal(UpstreamRejected("the upstream rejected the request (400): bad", status=400)) is None
    broke = out_of_credit(UpstreamRejected("the upstream rejected the request (402): insufficient_funds", status=402))
    assert isinstance(broke, UpstreamRetryable) and broke.status == 402 and "insufficient_funds" in broke.message


# --- through the gateway ------------------------------------------------------------------------


@pytest.fixture
async def loopback_gw(settings: Settings) -> AsyncIterator[Harness]:
    """The operator allows exactly 127.0.0.1 (the fake, which serves its image URLs there too)."""
    async with running_app(settings.model_copy(update={"callback_allow_networks": "127.0.0.1/32"})) as gw:
        yield gw


@pytest.fixture
def ideogram(upstream: FakeUpstream) -> IdeogramFake:
    return IdeogramFake(upstream, API_KEY)


async def ideogram_channel(gw: Harness, fake: IdeogramFake, **fields: Any) -> dict[str, Any]:
    fields.setdefault("models", {MODEL: "ideogram-v3"})
    fields.setdefault("only", True)
    fields.setdefault("auth", {"api_key": API_KEY})
    return await gw.add_channel(provider="ideogram", base_url=fake.upstream.url, timeout_s=20, **fields)


async def assert_nothing_charged(gw: Harness, account_id: str, credits: str = "100") -> None:
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == (credits, "0")
    assert await gw.ledger_problems() == []


async def test_a_turbo_catalog_model_is_served_by_ideogram_at_turbo_speed(
    loopback_gw: Harness, ideogram: IdeogramFake
) -> None:
    gw = loopback_gw
    turbo = await gw.admin(
        "PUT",
        "/admin/models/ideogram-v3-turbo",
        json={
            "credits_per_image": "5",
            "parameters": ["negative_prompt", "seed"],
            "options": {"rendering_speed": "TURBO"},
        },
    )
    assert turbo.status_code == 201, turbo.text
    assert turbo.json()["options"] == {"rendering_speed": "TURBO"}
    await ideogram_channel(gw, ideogram, models={MODEL: "ideogram-v3", "ideogram-v3-turbo": "ideogram-v3"})
    account_id, key = await gw.account_with_key(credits=100)

    fast = await gw.generate(
        key,
        {"model": "ideogram-v3-turbo", "prompt": "a sign reading OPEN", "n": 2, "aspect_ratio": "16:9", "seed": 42,
         "negative_prompt": "blur"},
    )  # fmt: skip
    standard = await gw.generate(key, {"model": MODEL, "prompt": "a sign reading CLOSED"})

    assert fast.status_code == 200, fast.text
    assert fast.json()["data"] == [{"b64_json": base64.b64encode(PNG).decode(), "mime_type": "image/png"}] * 2
    assert standard.status_code == 200, standard.text
    first, second = ideogram.forms
    assert first.headers["api-key"] == API_KEY and "authorization" not in first.headers
    assert first.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert first.filenames == [None] * len(first.names)  # plain form fields, not files
    assert first.fields == {
        "prompt": "a sign reading OPEN",
        "negative_prompt": "blur",
        "seed": "42",
        "aspect_ratio": "16x9",
        "num_images": "2",
        "rendering_speed": "TURBO",
        "magic_prompt": "OFF",
    }
    assert (second.fields["rendering_speed"], second.fields["resolution"]) == ("DEFAULT", "1024x1024")
    # Each URL was fetched at once, without the channel's key.
    assert len(ideogram.fetched) == 3
    fetches = [r for r in ideogram.upstream.requests if r.path.startswith(IMAGES)]
    assert all("api-key" not in r.headers for r in fetches)
    await assert_nothing_charged(gw, account_id, credits=str(100 - 2 * 5 - 8))


async def test_an_unsafe_image_is_withheld_and_not_billed(loopback_gw: Harness, ideogram: IdeogramFake) -> None:
    gw = loopback_gw
    await ideogram_channel(gw, ideogram, costs={"ideogram-v3": "0.06"})
    ideogram.withheld = {1}
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "three posters", "n": 3})

    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    assert len(ideogram.fetched) == 2  # the withheld one has no URL to fetch
    await assert_nothing_charged(gw, account_id, credits=str(100 - 2 * 8))
    [row] = await gw.usage_rows()
    assert (row["images_requested"], row["images_delivered"]) == ("3", "2")
    # Ideogram bills the withheld image too: the attempt keeps what the upstream returned and cost.
    [attempt] = (await gw.admin("GET", f"/admin/requests/{response.headers['x-request-id']}")).json()["attempts"]
    assert (attempt["images"], attempt["upstream_cost"], attempt["possibly_billed"]) == (3, "0.18", True)

    ideogram.withheld = {0, 1}
    everything_withheld = await gw.generate(key, {"model": MODEL, "prompt": "two posters", "n": 2})

    assert everything_withheld.status_code == 400, everything_withheld.text
    assert everything_withheld.json()["error"]["code"] == "moderation_blocked"
    await assert_nothing_charged(gw, account_id, credits=str(100 - 2 * 8))


@pytest.mark.parametrize(
    ("reply", "status", "code", "told"),
    [
        (ideogram_error(422, "Prompt or provided image failed the safety checks"), 400, "moderation_blocked", "safety"),
        (ideogram_error(400, "Invalid input: style_type"), 502, "upstream_error", "rejected the request (400)"),
        (ideogram_error(401, f"Invalid Api-Key {API_KEY}"), 502, "upstream_error", "credentials (401)"),
        (ideogram_error(403, "No access to this model"), 502, "upstream_error", "credentials (403)"),
        (Reply(402, {"reject_reason": "insufficient_funds"}), 502, "upstream_error", "must add credit"),
        (Reply(429, {"error": "Too many requests"}, headers={"retry-after": "7"}), 429, "rate_limited", ""),
    ],
)
async def test_ideogram_errors_are_typed_and_never_charged(
    gw: Harness, ideogram: IdeogramFake, reply: Reply, status: int, code: str, told: str
) -> None:
    channel = await ideogram_channel(gw, ideogram)
    ideogram.error = reply
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a poster"})

    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert told in response.json()["error"]["message"]
    assert API_KEY not in response.text and API_KEY[:16] not in response.text
    await assert_nothing_charged(gw, account_id)
    health = (await gw.admin("GET", f"/admin/channels/{channel['id']}")).json()["health"]
    assert API_KEY[:16] not in str(health["last_error"])


async def test_an_out_of_credit_channel_fails_over_to_the_next(loopback_gw: Harness, ideogram: IdeogramFake) -> None:
    gw = loopback_gw
    spent = "spent-key-1234567890"
    ideogram.accounts[spent] = Reply(402, {"reject_reason": "insufficient_funds"})
    await ideogram_channel(gw, ideogram, name="broke", priority=10, auth={"api_key": spent})
    await ideogram_channel(gw, ideogram, name="funded", only=False, priority=0)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a poster"})

    assert response.status_code == 200, response.text
    calls = [r.headers["api-key"] for r in ideogram.upstream.requests if r.path == GENERATE]
    assert calls == [spent, API_KEY]
    await assert_nothing_charged(gw, account_id, credits="92")


async def test_an_expired_image_url_is_a_failed_attempt_that_is_not_retried_elsewhere(
    loopback_gw: Harness, ideogram: IdeogramFake
) -> None:
    gw = loopback_gw
    await ideogram_channel(gw, ideogram, name="first", priority=10)
    await ideogram_channel(gw, ideogram, name="second", only=False, priority=0)
    ideogram.url_for = lambda base, index: f"{base}{IMAGES}expired.png"
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a poster"})

    # Ideogram generated (and billed) the image: paying another channel blindly is the operator's
    # call (retry_ambiguous), so the caller hears the outcome is unknown, and pays nothing.
    assert response.status_code == 504, response.text
    assert "expired.png" not in response.text
    assert [r.path for r in ideogram.upstream.requests] == [GENERATE, f"{IMAGES}expired.png"]
    await assert_nothing_charged(gw, account_id)


@pytest.fixture
async def sentinel() -> AsyncIterator[ConnectionSentinel]:
    # It hands out a valid PNG, so a fetch that got through would be delivered and charged.
    head = f"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {len(PNG)}\r\nconnection: close\r\n\r\n"
    async with watching(SENTINEL_HOST, head.encode() + PNG) as watcher:
        yield watcher


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("http://127.0.0.3:{port}/x.png", id="loopback"),
        pytest.param("http://169.254.169.254/latest/meta-data/x.png", id="cloud-metadata"),
        pytest.param("http://[::ffff:127.0.0.3]:{port}/x.png", id="ipv4-mapped"),
    ],
)
async def test_image_urls_into_the_gateways_network_are_refused_without_a_connection(
    loopback_gw: Harness, ideogram: IdeogramFake, sentinel: ConnectionSentinel, template: str
) -> None:
    gw = loopback_gw
    channel = await ideogram_channel(gw, ideogram)
    ideogram.url_for = lambda _base, _index: template.format(port=sentinel.port)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a poster"})

    assert response.status_code in (502, 504), response.text
    assert "x.png" not in response.text
    assert sentinel.connections == 0
    assert [r.path for r in ideogram.upstream.requests] == [GENERATE]
    await assert_nothing_charged(gw, account_id)
    health = (await gw.admin("GET", f"/admin/channels/{channel['id']}")).json()["health"]
    assert "refused by the SSRF guard" in health["last_error"]


@pytest.mark.parametrize(
    "body",
    [
        {"image_size": "2K"},
        {"person_generation": "allow_adult"},
        {"seed": 4_000_000_000},
        {"output_format": "jpeg"},
    ],
)
async def test_what_ideogram_cannot_honour_is_a_400_before_any_hold(
    gw: Harness, ideogram: IdeogramFake, body: dict[str, Any]
) -> None:
    # imagen4 declares 2K, person_generation and seed, so it is this Ideogram channel that cannot.
    await ideogram_channel(gw, ideogram, models={"imagen4": "ideogram-v3"})
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": "imagen4", "prompt": "x", **body})

    assert response.status_code == 400, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (
        "unsupported_parameter",
        next(iter(body)),
    )
    assert ideogram.upstream.requests == []
    await assert_nothing_charged(gw, account_id)
    assert await gw.usage_rows() == []  # no hold was ever placed


async def test_model_options_are_validated_patched_and_round_trip_through_config_export(
    gw: Harness, tmp_path: Path
) -> None:
    from app.admin.config_apply import apply_to_database
    from app.admin.config_export import export_config
    from app.admin.config_file import load_config

    # A channel needs no base_url: empty means Ideogram's public API.
    preset = await gw.add_channel(provider="ideogram", auth={"api_key_env": "IDEOGRAM_API_KEY"}, models={MODEL: MODEL})
    assert preset["base_url"] == ""

    listed = {m["id"]: m for m in (await gw.admin("GET", "/admin/models")).json()["data"]}
    assert listed[MODEL]["options"] == {"rendering_speed": "DEFAULT"}
    assert listed["imagen4"]["options"] == {}

    for bad in ({"rendering_speed": "FLASHY"}, {"speed": "TURBO"}, {"rendering_speed": 3}):
        refused = await gw.admin("PATCH", f"/admin/models/{MODEL}", json={"options": bad})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"].startswith("options")
    patched = await gw.admin("PATCH", f"/admin/models/{MODEL}", json={"options": {"rendering_speed": "QUALITY"}})
    assert patched.json()["options"] == {"rendering_speed": "QUALITY"}

    async with gw.gateway.db.sessions() as session:
        exported = await export_config(session)
    assert "rendering_speed: QUALITY" in exported
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    report = await apply_to_database(gw.gateway.db, gw.gateway.secrets, load_config(path), str(path))
    assert report.document()["changed"] == 0

    # A full replace needs the options too (a PUT that left them out would wipe them).
    full = {k: v for k, v in patched.json().items() if k != "options"}
    partial = await gw.admin("PUT", f"/admin/models/{MODEL}", json=full)
    assert partial.status_code == 400 and "options" in partial.json()["error"]["message"]


async def test_a_refused_prompt_is_no_call_the_provider_bills(gw: Harness, ideogram: IdeogramFake) -> None:
    # Ideogram's 422 comes before any image is made: reconciliation must not expect it on the bill.
    await ideogram_channel(gw, ideogram, costs={"ideogram-v3": "0.06"})
    ideogram.error = ideogram_error(422, "Prompt or provided image failed the safety checks")
    _, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"model": MODEL, "prompt": "a poster"})

    assert response.status_code == 400, response.text
    export = await gw.admin("GET", "/admin/attempts/export")
    [row] = csv.DictReader(io.StringIO(export.text, newline=""))
    assert (row["outcome"], row["possibly_billed"], row["images"]) == ("succeeded", "false", "0")
    assert row["upstream_cost"] in ("", "0")

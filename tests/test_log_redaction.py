"""No log line carries a credential: not the channel keys an upstream echoes back (in its error
body, its headers or a traceback), not a caller's gateway key, whoever logs it and however."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from app.main import create_app
from app.observability.redaction import SecretRedactor
from app.providers.credentials import known_secrets
from app.settings import Settings
from app.specs import ChannelSpec
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app
from tests.support.logs import from_logger, json_log_lines
from tests.support.processes import free_port

CHANNEL_KEY = "AIzaSyC4n4ry-5ecr3t-0f-7he-ch4nnel-k3y"
DISABLED_KEY = "sk-d1sabl3d-ch4nnel-k3y-n0t-in-use-0123"


@pytest.fixture
async def logged_app(
    settings: Settings, upstream: FakeUpstream
) -> AsyncIterator[tuple[Harness, Upstreams, io.StringIO]]:
    with json_log_lines() as lines:
        async with running_app(settings) as gw:
            local = await gw.local_channel()
            await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
            yield gw, Upstreams(upstream), lines


def echo_the_key(received: Received) -> Reply:
    """A hostile or buggy upstream that quotes the credential it was given everywhere it can."""
    key = received.headers.get("x-goog-api-key", "")
    prompt = received.json["instances"][0]["prompt"]
    message = f"quota exceeded for key {key} (prefix {key[:12]}) Authorization: Bearer {key}"
    if prompt == "rate":
        return Reply(429, {"error": {"code": 429, "message": message}}, headers={"retry-after": key, "x-echo": key})
    return Reply(500, {"error": {"code": 500, "message": message}}, headers={"x-echo": key})


async def test_channel_keys_echoed_by_an_upstream_reach_no_log_line(
    logged_app: tuple[Harness, Upstreams, io.StringIO], caplog: pytest.LogCaptureFixture
) -> None:
    gw, ups, lines = logged_app
    leaky = await ups.channel(gw, "leaky", echo_the_key, priority=10)
    await gw.admin("PATCH", f"/admin/channels/{leaky['id']}", json={"auth": {"api_key": CHANNEL_KEY}})
    await ups.channel(gw, "healthy", ok, priority=0)
    spare = await ups.channel(gw, "spare", ok, priority=-1)
    await gw.admin(
        "PATCH", f"/admin/channels/{spare['id']}", json={"auth": {"api_key": DISABLED_KEY}, "enabled": False}
    )
    _, key = await gw.account_with_key(credits=100)

    for prompt in ("fail", "rate"):  # a 500 first: after the 429 the channel cools
        response = await gw.generate(key, {"prompt": prompt})
        assert response.status_code == 200, response.text
        assert CHANNEL_KEY not in response.text

    # A code path that logs an exception carrying what an upstream sent, as an unexpected error
    # (the traceback holding the raw header), with the key in the arguments and extra fields too.
    log = logging.getLogger("app.errors")
    headers = httpx.Headers({"x-goog-api-key": CHANNEL_KEY, "retry-after": CHANNEL_KEY})
    try:
        raise ValueError(f"Invalid date value or format {headers.get('retry-after')!r}; sent {headers!r}")
    except ValueError:
        log.exception("unhandled error for %s", CHANNEL_KEY[:16], extra={"upstream_headers": dict(headers)})
    log.warning("disabled channel still holds %s", DISABLED_KEY, extra={"detail": f"key={DISABLED_KEY}"})

    written = lines.getvalue()
    records = [orjson.loads(line) for line in written.splitlines()]
    assert any("unhandled error" in record["message"] for record in records)
    # The new lines are under the canary too: the access lines of the failed-over requests and the
    # admin change that set the key.
    assert len([r for r in from_logger(written, "app.access") if r["route"] == "/v1/images/generations"]) == 2
    assert leaky["id"] in {r["entity_id"] for r in from_logger(written, "app.admin")}
    assert any("[redacted]" in record.get("exception", "") for record in records)
    for text in (written, caplog.text):
        for secret in (CHANNEL_KEY, DISABLED_KEY):
            assert secret not in text
            assert secret[:8] not in text, f"an 8-character fragment of {secret[:4]}… was logged"


async def test_a_key_from_the_environment_is_redacted_and_the_filter_goes_with_the_app(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = "env-k3y-Th4t-0nly-7he-env1ronment-kn0ws"
    monkeypatch.setenv("TEST_REDACTION_CHANNEL_KEY", from_env)
    with json_log_lines() as lines:
        async with running_app(settings) as gw:
            await gw.add_channel(
                name="from-env",
                provider="google-imagen",
                base_url="http://127.0.0.1:9/v1beta",
                auth={"api_key_env": "TEST_REDACTION_CHANNEL_KEY"},
                models={"imagen4": "imagen-4.0-generate-001"},
            )
            await gw.gateway.catalog.get()
            logging.getLogger("app.test").error("upstream answered: bad key %s", from_env)
        handler_filters = [f for h in logging.getLogger().handlers for f in h.filters]
    assert from_env not in lines.getvalue()
    assert "[redacted]" in lines.getvalue()
    assert handler_filters == [], "the app's redaction outlives the app"


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The app behind a real uvicorn server with its access log on: the line an operator who
    turns access logs on would get, query string included."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_config=None, log_level="info")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.02)
        assert server.started, "the gateway did not start"
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def test_a_callers_gateway_key_reaches_no_log_line(settings: Settings) -> None:
    async with running_app(settings) as gw:
        _, key = await gw.account_with_key(credits=100)
    with json_log_lines() as lines, served(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            as_query = await http.post(
                f"/v1beta/models/imagen4:predict?key={key}", json={"instances": [{"prompt": "x"}]}
            )
            as_header = await http.post(
                "/v1/images/generations", json={"prompt": "x"}, headers={"authorization": f"Bearer {key}"}
            )
            wrong = await http.get(f"/v1/account?key={key}x", headers={"x-goog-api-key": f"{key}x"})
            logging.getLogger("app.keys").warning("refused Authorization: Bearer %s from %s", key, key)
    assert (as_query.status_code, as_header.status_code, wrong.status_code) == (200, 200, 401)
    written = lines.getvalue()
    assert "predict?key=" in written  # uvicorn's access line is there…
    assert key not in written  # …without the key
    assert key[4:20] not in written
    ours = [r for r in from_logger(written, "app.access") if r["route"] == "/v1beta/models/{model}:predict"]
    assert [r["key_prefix"] for r in ours] == [key[:12]]  # the gateway's line names the key by its prefix


async def test_the_startup_line_shows_no_database_password_or_token(
    settings: Settings, backend: str, upstream: FakeUpstream
) -> None:
    if backend == "sqlite":
        pytest.skip("a SQLite URL carries no password")
    password = "pg-Pa55w0rd-canary-71"  # the test server trusts loopback: any password connects
    with_secrets = settings.model_copy(
        update={
            "database_url": settings.database_url.replace("://postgres@", f"://postgres:{password}@", 1),
            "metrics_token": "metrics-t0ken-canary-1234",
        }
    )
    assert password in with_secrets.database_url
    with json_log_lines() as lines:
        async with running_app(with_secrets) as gw:
            await gw.add_channel(
                name="keyed",
                provider="google-imagen",
                base_url=f"{upstream.url}/v1beta",
                auth={"api_key": CHANNEL_KEY},
                models={"imagen4": "imagen-4.0-generate-001"},
            )
        async with running_app(with_secrets):  # starts again, now with a keyed channel
            pass
    written = lines.getvalue()
    assert len([r for r in from_logger(written, "app.startup") if r["message"] == "gateway started"]) == 2
    for secret in (password, "metrics-t0ken-canary-1234", with_secrets.admin_token or "?", CHANNEL_KEY):
        assert secret not in written
        assert secret[:8] not in written


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("GET /v1beta/models/m:predict?key=AIzaSyD-x_y HTTP/1.1", "?key=[redacted] HTTP/1.1"),
        ("POST /x?alt=json&key=AIzaSyD-x_y&b=1", "&key=[redacted]&b=1"),
        ("headers: Authorization: Bearer sk-live.abc/def+g==", "Authorization: Bearer [redacted]"),
        ("{'x-goog-api-key': 'AIzaSyD-x_y', 'accept': '*/*'}", "{'x-goog-api-key': '[redacted]', 'accept'"),
        ("Api-Key: 0123456789abcdef", "Api-Key: [redacted]"),
        ("caller igw_AbCdEfGh1234567890_-abcdefghijklmnopqrstu", "caller igw_[redacted]"),
        ("token ya29.a0AfB_byC-xyz expired", "token [redacted] expired"),
        ("pem -----BEGIN PRIVATE KEY-----\\nMIIEvQ\\nAbC=\\n-----END PRIVATE KEY-----\\n done", "pem [redacted]"),
    ],
)
def test_credential_shapes_are_redacted_whoever_logs_them(line: str, kept: str) -> None:
    scrubbed = SecretRedactor().scrub(line)
    assert kept in scrubbed
    assert "AIzaSyD" not in scrubbed and "sk-live" not in scrubbed and "MIIEvQ" not in scrubbed


def test_known_secrets_and_their_cut_off_prefixes_are_redacted_and_ordinary_text_is_not() -> None:
    redactor = SecretRedactor([CHANNEL_KEY, "abc"])  # too short to redact without eating words
    assert redactor.scrub(f"key {CHANNEL_KEY} and ({CHANNEL_KEY[:11]}) were refused") == (
        "key [redacted] and ([redacted]) were refused"
    )
    ordinary = "client disconnected; released 3 hold(s) for abc, igw_AbCd1234 (prefix), key=value, Bearer token"
    assert redactor.scrub(ordinary) == ordinary
    redactor.remember([DISABLED_KEY])
    assert redactor.scrub(f"{CHANNEL_KEY} {DISABLED_KEY}") == f"{CHANNEL_KEY} [redacted]"


async def test_every_kind_of_channel_secret_is_known_to_the_redactor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem_line = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        orjson.dumps(
            {
                "private_key_id": "f00dfeed" * 5,
                "private_key": f"-----BEGIN PRIVATE KEY-----\n{pem_line}\n-----END PRIVATE KEY-----\n",
            }
        ).decode()
    )
    monkeypatch.setenv("TEST_REDACTION_ENV_KEY", "from-the-environment-0123")

    def channel(**auth: str) -> ChannelSpec:
        return ChannelSpec(
            id="ch", name="ch", provider="google-imagen", base_url="http://x", auth=auth, models={}, priority=0,
            weight=1, multiplier=Decimal(1), enabled=False, timeout_s=10, max_concurrency=None,
        )  # fmt: skip

    found = await known_secrets(
        [
            channel(api_key=CHANNEL_KEY),
            channel(api_key_env="TEST_REDACTION_ENV_KEY"),
            channel(service_account_file=str(key_file)),
            channel(service_account_file=str(tmp_path / "missing.json")),
        ]
    )
    assert found == {CHANNEL_KEY, "from-the-environment-0123", "f00dfeed" * 5, pem_line}

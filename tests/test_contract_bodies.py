"""Every body the app sends is the one its OpenAPI document promises.

Clients are generated from /openapi.json, but the bodies are rendered with orjson by the wire
modules, not by the response models. So each body the app actually sends (images as base64 and as
URLs, a task queued and finished, errors in the contract's and in Google's shape, Google's
predictions, and the idempotent replay of each) is validated here against the schema documented
for its route and status, with undocumented fields refused.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import update

from app.idempotency.models import IdempotentRequest
from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness, running_app

IMAGES = "/v1/images/generations"
PREDICT = "/v1beta/models/{model}:predict"
VERTEX = "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:predict"
PREDICT_BODY = {"instances": [{"prompt": "a kite"}], "parameters": {"sampleCount": 1}}


@pytest.fixture
async def cw(settings: Settings) -> AsyncIterator[Harness]:
    # A quick worker, so a task finishes while the test waits.
    async with running_app(settings.model_copy(update={"worker_poll_s": 0.05})) as harness:
        yield harness


class Contract:
    """The OpenAPI document's response schemas, closed: a field it does not name is an error."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.paths = document["paths"]
        self.components = _closed(document["components"])

    def check(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        documented = self.paths[path][method]["responses"]
        status = str(response.status_code)
        assert status in documented, f"{method.upper()} {path} answered an undocumented {status}: {response.text}"
        assert response.headers["content-type"].startswith("application/json")
        schema = documented[status]["content"]["application/json"]["schema"]
        body: dict[str, Any] = response.json()
        jsonschema.Draft202012Validator({**schema, "components": self.components}).validate(body)
        return body


def _closed(node: Any) -> Any:
    node = copy.deepcopy(node)
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "properties" in item and "additionalProperties" not in item:
                item["additionalProperties"] = False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return node


async def _contract(gw: Harness) -> Contract:
    return Contract((await gw.http.get("/openapi.json")).json())


def _bearer(key: str, idem: str | None = None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {key}"}
    return headers | ({"idempotency-key": idem} if idem else {})


async def _replay_pair(gw: Harness, path: str, body: dict[str, Any], headers: dict[str, str]) -> list[httpx.Response]:
    first = await gw.http.post(path, json=body, headers=headers)
    again = await gw.http.post(path, json=body, headers=headers)
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("idempotent-replayed") == "true", again.text
    assert again.status_code == first.status_code
    return [first, again]


def _unsigned(body: dict[str, Any]) -> dict[str, Any]:
    """The body with each file URL's signature and expiry left out."""
    data = [{**item, "url": item["url"].split("?")[0]} if "url" in item else item for item in body["data"]]
    return {**body, "data": data}


async def _stored_template(gw: Harness, account_id: str, idem: str) -> dict[str, Any]:
    async with gw.gateway.db.sessions() as session:
        row = await session.get(IdempotentRequest, (account_id, idem))
    assert row is not None and row.response is not None
    return row.response


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
async def test_images_live_and_replayed_match_images_response(cw: Harness, response_format: str) -> None:
    contract = await _contract(cw)
    account_id, key = await cw.account_with_key(credits=100)
    body = {"prompt": "a kite", "n": 2, "response_format": response_format}
    first, again = await _replay_pair(cw, IMAGES, body, _bearer(key, "img"))
    live = contract.check(first, "post", IMAGES)
    # A replay signs its file URLs afresh: their expiry may be a second later than the first's.
    assert _unsigned(contract.check(again, "post", IMAGES)) == _unsigned(live)
    assert [set(item) for item in live["data"]] == [{response_format, "mime_type"}] * 2
    # The kept template has the JSON shape of every release, so answers kept before an upgrade replay.
    stored = await _stored_template(cw, account_id, "img")
    assert set(stored) == {"kind", "response_format", "files", "body"} and stored["kind"] == "images"
    assert stored["body"]["data"] == [] and len(stored["files"]) == 2


async def test_task_queued_finished_and_replayed_match_task_object(cw: Harness) -> None:
    contract = await _contract(cw)
    account_id, key = await cw.account_with_key(credits=100)
    body = {"prompt": "a kite", "async": True, "metadata": {"job": "7"}}
    queued, replayed = await _replay_pair(cw, IMAGES, body, _bearer(key, "task"))
    assert queued.status_code == 202
    task = contract.check(queued, "post", IMAGES)
    assert contract.check(replayed, "post", IMAGES)["id"] == task["id"]

    deadline = time.monotonic() + 15
    while (finished := await cw.http.get(f"/v1/tasks/{task['id']}", headers=_bearer(key))).json()[
        "status"
    ] != "succeeded":
        assert time.monotonic() < deadline, finished.text
        await asyncio.sleep(0.05)
    done = contract.check(finished, "get", "/v1/tasks/{task_id}")
    assert done["result"]["data"] and done["billing"]["credits"] == "8"
    # A replay after the task finished shows it as it is now, still as the 202 it first was.
    late = await cw.http.post(IMAGES, json=body, headers=_bearer(key, "task"))
    assert late.status_code == 202 and late.headers["idempotent-replayed"] == "true"
    assert contract.check(late, "post", IMAGES)["status"] == "succeeded"
    canceled = await cw.http.post(f"/v1/tasks/{task['id']}/cancel", headers=_bearer(key))
    contract.check(canceled, "post", "/v1/tasks/{task_id}/cancel")
    stored = await _stored_template(cw, account_id, "task")
    assert stored == {"kind": "task", "task_id": task["id"], "account_id": account_id}


async def test_errors_match_the_contracts_error_body(gw: Harness) -> None:
    contract = await _contract(gw)
    _, key = await gw.account_with_key(credits=4)
    cases = [
        (await gw.http.post(IMAGES, json={"prompt": "x"}), "post", IMAGES, 401),
        (await gw.generate(key, {"prompt": "x", "n": 0}), "post", IMAGES, 400),
        (await gw.generate(key, {"prompt": "x", "model": "nope"}), "post", IMAGES, 404),
        (await gw.generate(key, {"prompt": "x"}), "post", IMAGES, 402),
        (await gw.http.get("/v1/tasks/task_nope", headers=_bearer(key)), "get", "/v1/tasks/{task_id}", 404),
        (await gw.http.get("/v1/models"), "get", "/v1/models", 401),
    ]
    for response, method, path, status in cases:
        assert response.status_code == status, response.text
        error = contract.check(response, method, path)["error"]
        assert error["request_id"] == response.headers["x-request-id"]


async def test_predictions_live_and_replayed_match_predict_response(gw: Harness, upstream: FakeUpstream) -> None:
    contract = await _contract(gw)

    def one_image_one_withheld(received: Received) -> Reply:
        image = {"bytesBase64Encoded": tiny_png_b64(), "mimeType": "image/png"}
        return Reply(json={"predictions": [image, {"raiFilteredReason": "withheld for safety"}]})

    await Upstreams(upstream).channel(gw, "imagen", one_image_one_withheld)
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    account_id, key = await gw.account_with_key(credits=100)
    body = {"instances": [{"prompt": "a kite"}], "parameters": {"sampleCount": 2, "includeRaiReason": True}}
    headers = {"x-goog-api-key": key, "idempotency-key": "p"}
    first, again = await _replay_pair(gw, "/v1beta/models/imagen4:predict", body, headers)
    live = contract.check(first, "post", PREDICT)
    assert live["predictions"][1] == {"raiFilteredReason": "withheld for safety"}
    assert contract.check(again, "post", PREDICT) == live
    assert again.headers["x-gateway-credits"] == first.headers["x-gateway-credits"] == "8"
    stored = await _stored_template(gw, account_id, "p")
    assert set(stored) == {"kind", "model", "response_format", "files", "rai_reasons", "headers"}

    upstream.respond = lambda _r: Reply(json={"predictions": [{"raiFilteredReason": "withheld"}]})
    for include_rai in (False, True):
        withheld = {"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 1, "includeRaiReason": include_rai}}
        filtered = await gw.http.post("/v1beta/models/imagen4:predict", json=withheld, headers={"x-goog-api-key": key})
        assert contract.check(filtered, "post", PREDICT) == (
            {"predictions": [{"raiFilteredReason": "withheld"}]} if include_rai else {}
        )


async def test_relay_errors_match_googles_error_body(gw: Harness) -> None:
    contract = await _contract(gw)
    account_id, broke = await gw.account_with_key(credits=1)
    _, key = await gw.account_with_key(credits=100)
    vertex = "/v1/projects/p/locations/us-central1/publishers/google/models/imagen4:predict"
    cases = [
        (await gw.http.post("/v1beta/models/imagen4:predict", json=PREDICT_BODY), PREDICT, 401, "UNAUTHENTICATED"),
        (
            await gw.http.post("/v1beta/models/imagen4:predict", json={}, params={"key": key}),
            PREDICT,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            await gw.http.post(
                "/v1beta/models/imagen4:predict",
                content=b"x",
                headers={"x-goog-api-key": key, "content-type": "text/plain"},
            ),
            PREDICT,
            415,
            "INVALID_ARGUMENT",
        ),
        (
            await gw.http.post("/v1beta/models/imagen-9:predict", json=PREDICT_BODY, params={"key": key}),
            PREDICT,
            404,
            "NOT_FOUND",
        ),
        (
            await gw.http.post("/v1beta/models/imagen4:predict", json=PREDICT_BODY, params={"key": broke}),
            PREDICT,
            402,
            "RESOURCE_EXHAUSTED",
        ),
        # An unknown API version is no route, and said so before the key is looked at.
        (await gw.http.post(vertex.replace("/v1/", "/v2/", 1), json=PREDICT_BODY), VERTEX, 404, "NOT_FOUND"),
    ]
    for response, path, status, google_status in cases:
        assert response.status_code == status, response.text
        error = contract.check(response, "post", path)["error"]
        assert (error["code"], error["status"]) == (status, google_status)
    assert (await gw.account(account_id))["balance"] == "1"


async def test_a_replay_refused_to_another_key_is_in_googles_shape(gw: Harness) -> None:
    contract = await _contract(gw)
    account_id, unrestricted = await gw.account_with_key(credits=100)
    restricted = await gw.create_key(account_id, models=["imagen4-fast"])
    path = "/v1beta/models/imagen4:predict"
    first = await gw.http.post(
        path, json=PREDICT_BODY, headers={"x-goog-api-key": unrestricted, "idempotency-key": "k"}
    )
    assert first.status_code == 200, first.text
    refused = await gw.http.post(
        path, json=PREDICT_BODY, headers={"x-goog-api-key": restricted, "idempotency-key": "k"}
    )
    assert refused.status_code == 403
    assert contract.check(refused, "post", PREDICT)["error"]["status"] == "PERMISSION_DENIED"


async def test_an_unexpected_failure_on_the_relay_is_still_in_googles_shape(gw: Harness) -> None:
    """A 500 is rendered outside the route's own handling; it must still be Google's shape there
    (and the contract's elsewhere). A replay whose image blob is gone is one way to get one."""
    account_id, key = await gw.account_with_key(credits=100)
    headers = {"x-goog-api-key": key, "idempotency-key": "gone"}
    assert (await gw.http.post("/v1beta/models/imagen4:predict", json=PREDICT_BODY, headers=headers)).status_code == 200
    for ref in (await _stored_template(gw, account_id, "gone"))["files"]:
        await gw.gateway.files.blobs.delete(ref["file_id"])
    transport = httpx.ASGITransport(app=gw.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        failed = await http.post("/v1beta/models/imagen4:predict", json=PREDICT_BODY, headers=headers)
    assert failed.status_code == 500
    assert failed.json() == {
        "error": {"code": 500, "message": "Internal error; nothing was charged.", "status": "INTERNAL"}
    }


async def test_predict_replay_makes_no_second_upstream_call_or_charge(gw: Harness, upstream: FakeUpstream) -> None:
    ups = Upstreams(upstream)
    await ups.channel(gw, "imagen", ok)
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    account_id, key = await gw.account_with_key(credits=100)
    headers = {"authorization": f"Bearer {key}", "idempotency-key": "order-1"}
    first = await gw.http.post("/v1beta/models/imagen4:predict", json=PREDICT_BODY, headers=headers)
    again = await gw.http.post("/v1beta/models/imagen4:predict", json=PREDICT_BODY, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["x-gateway-request-id"] == first.headers["x-gateway-request-id"]
    assert ups.calls("imagen") == 1
    assert (await gw.account(account_id))["balance"] == "92"
    assert await gw.ledger_problems() == []


async def test_a_predict_answer_kept_before_templates_named_their_model_still_replays(gw: Harness) -> None:
    account_id, unrestricted = await gw.account_with_key(credits=100)
    allowed = await gw.create_key(account_id, models=["imagen4"])
    restricted = await gw.create_key(account_id, models=["imagen4-fast"])
    path = "/v1beta/models/imagen4:predict"

    def headers(key: str) -> dict[str, str]:
        return {"x-goog-api-key": key, "idempotency-key": "old"}

    first = await gw.http.post(path, json=PREDICT_BODY, headers=headers(unrestricted))
    assert first.status_code == 200, first.text
    old_shape = await _stored_template(gw, account_id, "old")
    del old_shape["model"]  # as kept by releases before the model was named
    async with gw.gateway.db.transaction() as session:
        await session.execute(
            update(IdempotentRequest)
            .where(IdempotentRequest.account_id == account_id, IdempotentRequest.key == "old")
            .values(response=old_shape)
        )
    refused = await gw.http.post(path, json=PREDICT_BODY, headers=headers(restricted))
    assert refused.status_code == 403, refused.text
    again = await gw.http.post(path, json=PREDICT_BODY, headers=headers(allowed))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert (await gw.account(account_id))["balance"] == "92"

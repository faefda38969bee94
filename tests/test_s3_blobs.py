"""Image files in an S3-compatible bucket (GATEWAY_BLOB_URL), against a local moto S3 server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from sqlalchemy import update

from app.db import utcnow
from app.files.models import StoredFile
from app.settings import Settings
from app.tasks.retention import purge_expired
from tests.support.harness import running_app
from tests.support.processes import free_port


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    port = free_port()
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    server = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="images")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_url_responses_are_stored_in_and_served_from_the_bucket(settings: Settings, s3_endpoint: str) -> None:
    blob_url = f"s3://images/gateway?endpoint_url={s3_endpoint}&region=us-east-1"
    async with running_app(settings.model_copy(update={"blob_url": blob_url})) as gw:
        _, key = await gw.account_with_key()
        response = await gw.generate(key, {"prompt": "x", "n": 2, "response_format": "url"})
        assert response.status_code == 200, response.text
        urls = [item["url"] for item in response.json()["data"]]
        bucket = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        stored = bucket.list_objects_v2(Bucket="images", Prefix="gateway/")["Contents"]
        assert len(stored) == 2
        for url in urls:
            fetched = await gw.http.get(url)
            assert fetched.status_code == 200
            assert fetched.content.startswith(b"\x89PNG")

        async with gw.gateway.db.transaction() as session:
            await session.execute(update(StoredFile).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert await purge_expired(gw.gateway.db, gw.gateway.files.blobs) == 2
        assert bucket.list_objects_v2(Bucket="images", Prefix="gateway/").get("KeyCount") == 0
        assert (await gw.http.get(urls[0])).status_code == 404

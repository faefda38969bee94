"""Where image bytes live: a local directory by default, an S3-compatible bucket when
`GATEWAY_BLOB_URL` is set (`s3://bucket/prefix?endpoint_url=…&region=…`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


class BlobNotFound(Exception):
    pass


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...


class LocalBlobStore:
    """Files under a directory; writes go through a temporary name so a reader never sees half."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if "/" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return self.root / key[-2:] / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)


class S3BlobStore:
    """Any S3-compatible bucket through boto3 (the maintained client), its blocking calls run in
    threads so the event loop never waits on the network."""

    def __init__(self, blob_url: str) -> None:
        parts = urlsplit(blob_url)
        if parts.scheme != "s3" or not parts.hostname:
            raise ValueError("GATEWAY_BLOB_URL must look like s3://bucket/prefix?endpoint_url=…&region=…")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.bucket = parts.hostname
        self.prefix = parts.path.strip("/")
        # Imported here, not at module level: boto3/botocore cost ~23 MB RSS per process, paid
        # only by deployments that set GATEWAY_BLOB_URL.
        import boto3

        self.client: Any = boto3.client(
            "s3", endpoint_url=options.get("endpoint_url"), region_name=options.get("region", "us-east-1")
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
        )

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                raise BlobNotFound(key) from None
            body: bytes = response["Body"].read()
            return body

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))


def open_blob_store(blob_url: str | None, data_dir: Path) -> BlobStore:
    if blob_url:
        return S3BlobStore(blob_url)
    return LocalBlobStore(data_dir / "blobs")

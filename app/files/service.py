"""Keeping delivered images as files: blobs first, then rows in the caller's transaction."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.files.blobs import BlobStore
from app.files.models import InstanceSecret, StoredFile
from app.files.signing import UrlSigner
from app.images import GeneratedImage, sniff_image_type

SIGNING_SECRET = "file_url_signing_key"  # noqa: S105 - the name of the secret, not the secret


def new_file_id() -> str:
    return "file_" + secrets.token_hex(16)  # 128 bits: file ids are not guessable


class FileStore:
    def __init__(self, blobs: BlobStore, signer: UrlSigner, retention: timedelta) -> None:
        self.blobs = blobs
        self.signer = signer
        self.retention = retention

    async def write(self, images: Sequence[GeneratedImage], account_id: str, request_id: str) -> list[StoredFile]:
        """Write the blobs and return their rows, not yet added to any session: the caller adds
        them in the same transaction that charges for them. The stored type is read from the bytes:
        the file is served from the gateway's origin under it, so no label is trusted."""
        now = utcnow()
        rows = []
        for image in images:
            try:
                data = image.b64.decode()
            except ValueError:
                raise ValueError("an upstream image is not valid base64") from None
            content_type = sniff_image_type(data[:12])
            if content_type is None:
                raise ValueError("an upstream image is not a PNG, JPEG or WebP image")
            file_id = new_file_id()
            await self.blobs.put(file_id, data, content_type)
            rows.append(
                StoredFile(
                    id=file_id,
                    account_id=account_id,
                    request_id=request_id,
                    blob_key=file_id,
                    content_type=content_type,
                    size=len(data),
                    created_at=now,
                    expires_at=now + self.retention,
                )
            )
        return rows

    async def discard(self, rows: Sequence[StoredFile]) -> None:
        for row in rows:
            await self.blobs.delete(row.blob_key)


async def ensure_signing_key(session: AsyncSession) -> bytes:
    """The instance's URL-signing key, created once; concurrent first starts agree on one."""
    existing = await session.get(InstanceSecret, SIGNING_SECRET)
    if existing is None:
        session.add(InstanceSecret(name=SIGNING_SECRET, value=secrets.token_urlsafe(48)))
        await session.flush()
        existing = await session.get(InstanceSecret, SIGNING_SECRET)
    assert existing is not None
    return existing.value.encode()


async def load_signing_key(session: AsyncSession) -> bytes:
    value = await session.scalar(select(InstanceSecret.value).where(InstanceSecret.name == SIGNING_SECRET))
    if value is None:
        raise RuntimeError("the file signing key is missing: run `image-gateway migrate`")
    return value.encode()

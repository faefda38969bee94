"""Deleting what has outlived its retention: finished tasks, and files with their blobs."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select

from app.db import Database, utcnow
from app.files.blobs import BlobStore
from app.files.models import StoredFile
from app.idempotency import service as idempotency
from app.tasks.models import Task

log = logging.getLogger("app.tasks.retention")
BATCH = 500


async def purge_expired(db: Database, blobs: BlobStore) -> int:
    """Files first (blob, then row), then finished tasks. A task still queued or running keeps
    its row: its hold is released by the sweeper when it expires, and a worker then fails it."""
    now = utcnow()
    async with db.sessions() as session:
        files = list((await session.scalars(select(StoredFile).where(StoredFile.expires_at < now).limit(BATCH))).all())
    for row in files:
        await blobs.delete(row.blob_key)
    async with db.transaction() as session:
        if files:
            await session.execute(delete(StoredFile).where(StoredFile.id.in_([f.id for f in files])))
        finished = ("succeeded", "failed", "canceled")
        result = await session.execute(delete(Task).where(Task.expires_at < now, Task.status.in_(finished)))
    await idempotency.purge_expired(db)
    purged = len(files) + (result.rowcount or 0)  # type: ignore[attr-defined]
    if purged:
        log.info("purged %d expired file(s) and task(s)", purged)
    return purged

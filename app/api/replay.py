"""What an `Idempotency-Key` keeps of an answer, and what a replay renders it with.

Each kind of answer is a typed template owned by its wire module (`ImagesAnswer` in
`unified_wire`, `PredictAnswer` in `google_wire`, `TaskAnswer` in `tasks`), which renders both the
live response and its replay from it. Templates refer to images by file id, never base64: a
replay reads the bytes back from the blob store or signs fresh URLs. They are kept as JSON in
`idempotent_requests.response`, in the shape they have had since the first release.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from fastapi.responses import Response

from app.db import Database
from app.files.models import StoredFile
from app.files.service import FileStore


@dataclass(frozen=True)
class ReplayContext:
    db: Database
    files: FileStore
    public_url: str | None  # the configured one (tasks fall back to the URL they were submitted to)
    base_url: str  # the configured one, else the one this request came to


class ReplayTemplate(Protocol):
    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]: ...

    async def served_model(self, context: ReplayContext) -> str | None:
        """The model the kept answer came from (a replay by another key of the account checks it)."""
        ...

    async def render(self, context: ReplayContext) -> Response: ...


@dataclass(frozen=True)
class FileRef:
    file_id: str
    mime_type: str

    def to_json(self) -> dict[str, str]:
        return {"file_id": self.file_id, "mime_type": self.mime_type}

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> FileRef:
        return cls(file_id=str(stored["file_id"]), mime_type=str(stored["mime_type"]))


def file_refs(files: Sequence[StoredFile]) -> tuple[FileRef, ...]:
    return tuple(FileRef(f.id, f.content_type) for f in files)


def refs_from_json(stored: Sequence[dict[str, Any]]) -> tuple[FileRef, ...]:
    return tuple(FileRef.from_json(item) for item in stored)


async def read_base64(files: FileStore, refs: Sequence[FileRef]) -> list[tuple[str, str]]:
    """(base64, mime type) of each kept image, read back from the blob store."""
    return [(base64.b64encode(await files.blobs.get(ref.file_id)).decode("ascii"), ref.mime_type) for ref in refs]


# Every answer a placeholder adapter produced says so, live or replayed, in whatever format.
PLACEHOLDER_HEADER = "x-gateway-placeholder"


def placeholder_headers(placeholder: bool) -> dict[str, str]:
    return {PLACEHOLDER_HEADER: "true"} if placeholder else {}

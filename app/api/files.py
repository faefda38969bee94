"""`GET /v1/files/{id}`: image bytes behind a signed, expiring URL."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.errors import GatewayError, NotFound
from app.files.blobs import BlobNotFound
from app.files.models import StoredFile
from app.http.deps import GatewayDep
from app.images import sniff_image_type
from app.keys.auth import authenticate, presented_key

router = APIRouter(tags=["files"])

# Files are served from the gateway's own origin, so a browser must never treat one as anything
# but the image it is: no type sniffing, no scripts, no plugins, a sandbox if opened directly.
SAFETY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class SignatureRejected(GatewayError):
    status = 403
    code = "invalid_signature"
    type = "permission_error"


@router.get(
    "/v1/files/{file_id}",
    summary="Image bytes",
    description=(
        "With `expires` and `sig` from a URL the gateway issued, no key is needed (the URL is the "
        "permission); 403 when the signature is wrong or expired. Without them, the owning "
        "account's key works; another account's file is 404."
    ),
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}, 403: {}, 404: {}},
    response_class=Response,
)
async def get_file(
    request: Request, file_id: str, gateway: GatewayDep, expires: str | None = None, sig: str | None = None
) -> Response:
    signed = expires is not None or sig is not None
    account_id: str | None = None
    if signed:
        if not gateway.files.signer.valid(file_id, expires, sig):
            raise SignatureRejected("This file URL's signature is wrong or has expired; fetch the task again.")
    elif presented_key(request) is not None:
        account_id = (await authenticate(gateway.keys, request)).account_id
    else:
        raise SignatureRejected("A signed URL (expires, sig) or an API key is required.")
    async with gateway.db.sessions() as session:
        row = await session.get(StoredFile, file_id)
    if row is None or (account_id is not None and row.account_id != account_id):
        raise NotFound(f"No file with id {file_id!r}.")
    try:
        data = await gateway.files.blobs.get(row.blob_key)
    except BlobNotFound:
        raise NotFound(f"The file {file_id!r} has expired.") from None
    # The type comes from the bytes, not the row: files stored before types were checked may
    # hold anything, and those are only ever handed out as a download.
    content_type = sniff_image_type(data[:12])
    disposition = f'inline; filename="{file_id}.{EXTENSIONS[content_type]}"' if content_type else "attachment"
    return Response(
        data,
        media_type=content_type or "application/octet-stream",
        headers={
            "cache-control": "private, max-age=3600",
            "content-length": str(len(data)),
            "content-disposition": disposition,
            **SAFETY_HEADERS,
        },
    )

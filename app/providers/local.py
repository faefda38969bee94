"""The `local` provider: a placeholder image generator that needs no upstream account.

It draws real PNG/JPEG images of the exact requested dimensions with Pillow, deterministic for a
given prompt and seed, each stamped "PLACEHOLDER". It lets a fresh install work end to end and is
the stand-in upstream for tests and benchmarks. It is not a generative model.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import secrets

from PIL import Image, ImageDraw

from app.images import MIME_TYPES, Base64Text, GeneratedImage, ImageRequest, ImageResult
from app.specs import ChannelSpec


class LocalProvider:
    name = "local"
    placeholder = True  # its images are stand-ins, not generated: answers say so

    def unsupported(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> list[str]:
        return []  # it records every parameter the catalog allows; seed makes it deterministic

    async def generate(self, request: ImageRequest, channel: ChannelSpec, upstream_model: str) -> ImageResult:
        seed = request.seed if request.seed is not None else secrets.randbits(32)
        images = await asyncio.to_thread(_render_all, request, upstream_model, seed)
        return ImageResult(images=images)


def _render_all(request: ImageRequest, upstream_model: str, seed: int) -> list[GeneratedImage]:
    width, height = request.dimensions
    mime = MIME_TYPES[request.output_format]
    return [
        GeneratedImage(
            b64=Base64Text.of(
                base64.b64encode(
                    render_placeholder(
                        request.prompt, upstream_model, seed, index, width, height, request.output_format
                    )
                ).decode("ascii")
            ),
            mime_type=mime,
        )
        for index in range(request.n)
    ]


def render_placeholder(
    prompt: str, model: str, seed: int, index: int, width: int, height: int, output_format: str
) -> bytes:
    digest = hashlib.sha512(f"{model}\0{prompt}\0{seed}\0{index}".encode()).digest()
    # A 4x4 grid of colours from the digest, smoothly scaled up: cheap to draw at any size.
    tile = Image.frombytes("RGB", (4, 4), digest[:48])
    image = tile.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    label = f"PLACEHOLDER  {model}  seed {seed}  #{index + 1}"
    draw.rectangle((0, 0, width, 28), fill=(0, 0, 0))
    draw.text((8, 8), label, fill=(255, 255, 255))
    draw.text((8, 36), prompt[:120], fill=(255, 255, 255))
    out = io.BytesIO()
    if output_format == "jpeg":
        image.save(out, format="JPEG", quality=85)
    else:
        image.save(out, format="PNG", compress_level=1)
    return out.getvalue()

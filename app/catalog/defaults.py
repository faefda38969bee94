"""The catalog and channel a fresh install starts with (contract: "Models (default catalog)")."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from app.images import ASPECT_RATIOS, DEFAULT_IMAGE_SIZE, IMAGE_SIZES

IMAGEN_PARAMETERS = ["negative_prompt", "seed", "person_generation"]

DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "id": "imagen4-fast",
        "aliases": ["imagen-4.0-fast-generate-001"],
        "credits_per_image": Decimal(4),
        "image_sizes": [DEFAULT_IMAGE_SIZE],
        "parameters": IMAGEN_PARAMETERS,
        "max_prompt_chars": 2500,
        "description": "Imagen 4 Fast: quick drafts and high volume.",
    },
    {
        "id": "imagen4",
        "aliases": ["imagen-4.0-generate-001"],
        "credits_per_image": Decimal(8),
        "image_sizes": list(IMAGE_SIZES),
        "parameters": IMAGEN_PARAMETERS,
        "max_prompt_chars": 2500,
        "description": "Imagen 4 Standard: photorealism, illustration, product visuals.",
    },
    {
        "id": "imagen4-ultra",
        "aliases": ["imagen-4.0-ultra-generate-001"],
        "credits_per_image": Decimal(12),
        "image_sizes": list(IMAGE_SIZES),
        "parameters": IMAGEN_PARAMETERS,
        "max_prompt_chars": 2500,
        "description": "Imagen 4 Ultra: highest prompt fidelity.",
    },
    {
        "id": "grok-imagine",
        "aliases": [],
        "credits_per_image": Decimal(5),
        "image_sizes": [DEFAULT_IMAGE_SIZE],
        "parameters": [],
        "description": "Grok Imagine.",
    },
    {
        "id": "kling-image-o1",
        "aliases": [],
        "credits_per_image": Decimal(6),
        "image_sizes": list(IMAGE_SIZES),
        "parameters": ["negative_prompt", "seed"],
        "description": "Kling Image O1.",
    },
    {
        "id": "ideogram-v3",
        "aliases": [],
        "credits_per_image": Decimal(8),
        "image_sizes": [DEFAULT_IMAGE_SIZE],
        "parameters": ["negative_prompt", "seed"],
        "description": "Ideogram v3: strong typography.",
        # Ideogram's own speed/price tier; a turbo model is the same upstream model with "TURBO".
        "options": {"rendering_speed": "DEFAULT"},
    },
    {
        "id": "gpt-image-1.5-official",
        "aliases": ["gpt-image-1.5"],
        "credits_per_image": Decimal(10),
        "image_sizes": [DEFAULT_IMAGE_SIZE],
        "parameters": ["quality", "background"],
        "max_prompt_chars": 32000,
        "description": "OpenAI GPT Image 1.5.",
    },
    # Gemini's image models: served on gemini-image channels, and by name on the
    # `:generateContent` relay (aliases: Google's preview ids, which SDK users still type).
    {
        "id": "gemini-3.1-flash-image",
        "aliases": ["gemini-3.1-flash-image-preview"],
        "credits_per_image": Decimal(8),
        "image_sizes": list(IMAGE_SIZES),
        "parameters": ["seed", "person_generation"],  # person_generation on Vertex channels only
        "description": "Gemini 3.1 Flash Image (Nano Banana 2): fast, text in images.",
    },
    {
        "id": "gemini-3-pro-image",
        "aliases": ["gemini-3-pro-image-preview"],
        "credits_per_image": Decimal(12),
        "image_sizes": list(IMAGE_SIZES),
        "parameters": ["seed", "person_generation"],
        "description": "Gemini 3 Pro Image (Nano Banana Pro): reasoning, highest fidelity text.",
    },
]


def default_model_rows() -> list[dict[str, Any]]:
    return [
        {
            "multiplier": Decimal(1),
            "max_images": 4,
            "max_prompt_chars": 4000,
            "aspect_ratios": list(ASPECT_RATIOS),
            "enabled": True,
            **spec,
        }
        for spec in DEFAULT_MODELS
    ]


LOCAL_CHANNEL: dict[str, Any] = {
    "name": "local",
    "provider": "local",
    "base_url": "",
    "auth": {},
    "models": {"*": "*"},
    "priority": 0,
    "weight": 1,
    "multiplier": Decimal(1),
    "enabled": True,
    "timeout_s": 60.0,
}


GEMINI_IMAGE_MODELS = {
    # Google's named replacements for the Imagen :predict models retired on 2026-08-17.
    "imagen4-fast": "gemini-3.1-flash-image",
    "imagen4": "gemini-3.1-flash-image",
    "imagen4-ultra": "gemini-3-pro-image",
    "gemini-3.1-flash-image": "gemini-3.1-flash-image",
    "gemini-3-pro-image": "gemini-3-pro-image",
}


# grok-imagine on an xai-images channel (contract: "More providers").
XAI_IMAGE_MODELS = {"grok-imagine": "grok-imagine-image"}


def extra_first_start_channels(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """With GEMINI_API_KEY set at first start: a `gemini` channel, above `local`, that serves the
    Imagen models with Gemini image models; with XAI_API_KEY, an `xai` channel serving
    grok-imagine. The keys stay in the environment (api_key_env)."""
    return _gemini_channels(environ) + _xai_channels(environ)


def _xai_channels(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    if not environ.get("XAI_API_KEY"):
        return []
    return [
        {
            "name": "xai",
            "provider": "xai-images",
            "base_url": "",  # the provider's public default, https://api.x.ai/v1
            "auth": {"api_key_env": "XAI_API_KEY"},
            "models": dict(XAI_IMAGE_MODELS),
            "priority": 10,
            "weight": 1,
            "multiplier": Decimal(1),
            "enabled": True,
            "timeout_s": 120.0,
        }
    ]


def _gemini_channels(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    if not environ.get("GEMINI_API_KEY"):
        return []
    return [
        {
            "name": "gemini",
            "provider": "gemini-image",
            "base_url": "https://generativelanguage.googleapis.com/v1beta",
            "auth": {"api_key_env": "GEMINI_API_KEY"},
            "models": dict(GEMINI_IMAGE_MODELS),
            "priority": 10,
            "weight": 1,
            "multiplier": Decimal(1),
            "enabled": True,
            "timeout_s": 120.0,
        }
    ]

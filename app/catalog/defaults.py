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
}


def extra_first_start_channels(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """With GEMINI_API_KEY set at first start: a `gemini` channel, above `local`, that serves the
    Imagen models with Gemini image models. The key stays in the environment (api_key_env)."""
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

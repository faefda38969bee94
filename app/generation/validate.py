"""Checking a canonical request against what the chosen model can honour, before any hold."""

from __future__ import annotations

from app.errors import InvalidValue, ModelNotFound, UnsupportedParameter
from app.images import ImageRequest
from app.specs import CatalogSnapshot, ModelSpec


def resolve_model(snapshot: CatalogSnapshot, name: str) -> ModelSpec:
    spec = snapshot.resolve(name)
    if spec is None or not spec.enabled:
        raise ModelNotFound(
            f"The model {name!r} does not exist or is not enabled. GET /v1/models lists the models you can use.",
            param="model",
        )
    return spec


def check_capabilities(request: ImageRequest, model: ModelSpec) -> None:
    if len(request.prompt) > model.max_prompt_chars:
        raise InvalidValue(
            f"prompt is {len(request.prompt)} characters; {model.id} accepts at most {model.max_prompt_chars}.",
            param="prompt",
        )
    if not 1 <= request.n <= model.max_images:
        raise InvalidValue(f"n must be between 1 and {model.max_images} for {model.id}.", param="n")
    if request.aspect_ratio not in model.aspect_ratios:
        raise InvalidValue(
            f"aspect_ratio {request.aspect_ratio!r} is not supported by {model.id}; "
            f"supported: {', '.join(model.aspect_ratios)}.",
            param="aspect_ratio",
        )
    if request.image_size not in model.image_sizes:
        raise InvalidValue(
            f"image_size {request.image_size!r} is not supported by {model.id}; "
            f"supported: {', '.join(model.image_sizes)}.",
            param="image_size",
        )
    for name in request.optional_parameters():
        if name not in model.parameters:
            supported = ", ".join(model.parameters) or "none"
            raise UnsupportedParameter(
                f"{name} is not supported by {model.id} (optional parameters it supports: {supported}).",
                param=name,
            )

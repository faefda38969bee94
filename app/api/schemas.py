"""Response shapes of the caller API, for the OpenAPI document (bodies are rendered with orjson)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None = None
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ImageData(BaseModel):
    b64_json: str | None = Field(None, description="Base64 image bytes (response_format b64_json).")
    url: str | None = Field(None, description="Signed URL (response_format url).")
    mime_type: str


class FilteredImage(BaseModel):
    reason: str


class BillingBlock(BaseModel):
    images: int = Field(description="Images delivered and charged.")
    unit_credits: str
    model_multiplier: str
    channel_multiplier: str
    credits: str = Field(description="unit_credits × model_multiplier × channel_multiplier × images, 4 places.")
    balance: str = Field(description="Account balance after this charge.")


class ImagesResponse(BaseModel):
    id: str
    created: int
    model: str
    data: list[ImageData]
    filtered: list[FilteredImage] = Field(description="Images the upstream withheld; not charged.")
    billing: BillingBlock
    placeholder: bool | None = Field(None, description="True when served by the built-in local placeholder generator.")


class ModelInfo(BaseModel):
    id: str
    object: str = "model"
    credits_per_image: str
    multiplier: str
    aliases: list[str]
    max_images: int
    aspect_ratios: list[str]
    image_sizes: list[str]
    parameters: list[str]
    description: str
    placeholder: bool = Field(description="True when only the local placeholder generator serves this model.")


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelInfo]


class AccountRef(BaseModel):
    id: str
    name: str


class KeyRef(BaseModel):
    id: str
    name: str
    prefix: str


class AccountInfo(BaseModel):
    account: AccountRef
    key: KeyRef
    balance: str
    held: str
    available: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Bad input: invalid_request, invalid_value, unsupported_parameter, moderation_blocked",
        401: "invalid_api_key",
        402: "insufficient_credits",
        403: "model_not_allowed",
        404: "model_not_found",
        413: "request_too_large",
        415: "unsupported_media_type",
        502: "upstream_error",
        503: "no_channel_available",
        504: "upstream_timeout",
    }.items()
}

"""Response shapes of the caller API, for the OpenAPI document. Bodies are rendered with orjson by
the wire modules; tests/test_contract_bodies.py checks every body the app sends against these."""

from __future__ import annotations

from datetime import datetime
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


class Prediction(BaseModel):
    """An image, or with `includeRaiReason` the reason one was withheld (`raiFilteredReason`)."""

    # Google's wire names, camelCase.
    bytesBase64Encoded: str | None = None
    mimeType: str | None = None
    raiFilteredReason: str | None = None


class PredictResponse(BaseModel):
    predictions: list[Prediction] | None = Field(
        None, description="Absent (the body is {}) when every image was filtered, as Google answers."
    )


class GoogleErrorDetail(BaseModel):
    code: int = Field(description="The HTTP status.")
    message: str
    status: str = Field(description="Google's status name, e.g. INVALID_ARGUMENT, UNAUTHENTICATED.")


class GoogleErrorBody(BaseModel):
    error: GoogleErrorDetail


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


class BudgetInfo(BaseModel):
    credits: str = Field(description="Most credits that may be spent in one period.")
    period: str = Field(description="day | week | month (UTC calendar periods; weeks start on Monday)")
    spent: str = Field(description="Charged in the current period, plus what running requests hold.")
    remaining: str = Field(description="What the current period may still spend.")
    resets_at: datetime = Field(description="When the next period starts.")


class AccountInfo(BaseModel):
    account: AccountRef
    key: KeyRef
    balance: str
    held: str
    available: str
    webhook_secret: str = Field(description="Verifies the signatures of this account's task callbacks.")
    budget: BudgetInfo | None = Field(description="The account's budget and its current period; null without one.")
    key_budget: BudgetInfo | None = Field(description="This key's own budget, if it has one.")


class WebhookSecretRotated(BaseModel):
    webhook_secret: str = Field(description="The new secret; callbacks are signed with it from now on.")
    previous_valid_until: datetime = Field(
        description="Until then callbacks also carry a signature by the secret it replaced "
        "(`webhook-signature: v1,<new> v1,<old>`)."
    )


class OwnUsageTotals(BaseModel):
    requests: int = Field(description="Requests created in the range, in any status (still pending included).")
    images: int = Field(description="Images delivered by succeeded requests.")
    credits: str = Field(description="Credits charged: the ledger's charges for these requests, negated.")


class OwnUsageGroup(BaseModel):
    key_id: str | None = None
    key_name: str | None = Field(None, description="The key's current name.")
    model: str | None = None
    day: str | None = Field(None, description="UTC date the request was created, YYYY-MM-DD.")
    status: str | None = None
    month: str | None = Field(None, description="UTC month the request was created, YYYY-MM.")
    user: str | None = Field(None, description="The end-user id the caller sent (`user`).")


class OwnUsageRow(OwnUsageTotals, OwnUsageGroup):
    """One group, as a row of `GET /admin/usage` without the gateway's own economics: only the
    fields of the `group_by` values appear, then the group's totals."""


class OwnUsage(BaseModel):
    rows: list[OwnUsageRow]
    totals: OwnUsageTotals


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

GOOGLE_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": GoogleErrorBody, "description": description}
    for status, description in {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        402: "RESOURCE_EXHAUSTED (insufficient credits)",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        413: "INVALID_ARGUMENT (body too large)",
        415: "INVALID_ARGUMENT (not JSON)",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }.items()
}


class InlineData(BaseModel):
    mimeType: str
    data: str = Field(description="Base64 image bytes.")


class ContentPart(BaseModel):
    """A text part (words the upstream answered beside the image) or an image part."""

    text: str | None = None
    inlineData: InlineData | None = None


class CandidateContent(BaseModel):
    role: str = Field(description="Always model.")
    parts: list[ContentPart]


class Candidate(BaseModel):
    content: CandidateContent | None = Field(None, description="Absent when the image was withheld.")
    finishReason: str = Field(description="STOP for an image; IMAGE_SAFETY when it was withheld (not charged).")
    finishMessage: str | None = Field(None, description="Why the image was withheld.")
    index: int


class GenerateContentResponse(BaseModel):
    """Gemini's `:generateContent` answer, one candidate per image (google-genai's
    `GenerateContentResponse`)."""

    candidates: list[Candidate]
    modelVersion: str = Field(description="The catalog model that served the request.")
    responseId: str = Field(description="The gateway's request id (req_…), as in X-Request-Id.")

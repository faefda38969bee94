"""What the pipeline hands back: the delivered images with their frozen bill, or why not."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.billing.amounts import render
from app.errors import GatewayError, ModerationBlocked
from app.files.models import StoredFile
from app.images import GeneratedImage
from app.specs import ModelSpec


@dataclass(frozen=True)
class Billing:
    images: int
    unit_credits: Decimal
    model_multiplier: Decimal
    channel_multiplier: Decimal
    credits: Decimal
    balance: Decimal

    def to_json(self) -> dict[str, Any]:
        """The contract's `billing` block: amounts as decimal strings."""
        return {
            "images": self.images,
            "unit_credits": render(self.unit_credits),
            "model_multiplier": render(self.model_multiplier),
            "channel_multiplier": render(self.channel_multiplier),
            "credits": render(self.credits),
            "balance": render(self.balance),
        }


@dataclass(frozen=True)
class Generated:
    request_id: str
    created: int
    model: ModelSpec
    images: list[GeneratedImage]
    filtered_reasons: list[str]
    billing: Billing
    provider: str
    files: list[StoredFile] = field(default_factory=list)  # when the caller asked for URLs
    # Served by the built-in stand-in (ImageProvider.placeholder): the edge tells the caller.
    placeholder: bool = False


class AllImagesFiltered(ModerationBlocked):
    """Every image was withheld upstream. Nothing is charged; the Google route renders `{}`."""

    def __init__(self, request_id: str, reasons: list[str]) -> None:
        super().__init__(
            "Every generated image was blocked by the safety system; nothing was charged. "
            "Rephrase the prompt and try again."
        )
        self.request_id = request_id
        self.reasons = reasons


class StorageFailed(GatewayError):
    status = 503
    code = "storage_unavailable"
    type = "server_error"

"""Typed upstream outcomes. Adapters raise these; routing decides on them and never parses
provider-specific error bodies. Messages must never contain upstream credentials."""

from __future__ import annotations


class UpstreamError(Exception):
    """Base class: something went wrong talking to one channel."""

    def __init__(self, message: str, *, status: int | None = None, upstream_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # The upstream's own error code (OpenAI's `error.code`, Google's `error.status`), when given.
        self.upstream_code = upstream_code


class UpstreamRetryable(UpstreamError):
    """Nothing was generated (connect error, 429, 5xx, timeout before a response): another
    channel, or this one later, may succeed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        upstream_code: str | None = None,
    ) -> None:
        super().__init__(message, status=status, upstream_code=upstream_code)
        self.retry_after_s = retry_after_s


class UpstreamRejected(UpstreamError):
    """The upstream refused this request (4xx other than 429). Retrying elsewhere would fail the
    same way, so the caller gets a clear error instead."""


class UpstreamAmbiguous(UpstreamError):
    """The request was sent but no answer came (timeout mid-flight): the upstream may have
    generated and billed. Retried only where the channel's policy allows."""


class ContentFiltered(UpstreamError):
    """Every image was withheld by the upstream's safety filter.

    `billed` is False when the upstream refused the prompt before generating anything (Ideogram's
    422): then the attempt records no images, no cost, and nothing the provider may bill."""

    def __init__(self, reasons: list[str], *, billed: bool = True) -> None:
        super().__init__("all images were filtered")
        self.reasons = reasons
        self.billed = billed

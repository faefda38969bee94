"""The one error type the gateway raises toward callers, and the codes of the contract.

Every failure a caller can see is a `GatewayError`; a single handler in `app.http.errors` turns it
into the OpenAI-shaped body (or, asked of the route, Google's shape on the `:predict` relay).
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 400
    code = "invalid_request"
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})


class InvalidRequest(GatewayError):
    code = "invalid_request"


class InvalidValue(GatewayError):
    code = "invalid_value"


class UnsupportedParameter(GatewayError):
    code = "unsupported_parameter"


class ModerationBlocked(GatewayError):
    code = "moderation_blocked"
    type = "image_generation_user_error"


class InvalidApiKey(GatewayError):
    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class AdminUnauthorized(GatewayError):
    status = 401
    code = "invalid_admin_token"
    type = "authentication_error"


class MetricsUnauthorized(GatewayError):
    status = 401
    code = "invalid_metrics_token"
    type = "authentication_error"


class InsufficientCredits(GatewayError):
    status = 402
    code = "insufficient_credits"
    type = "insufficient_credits"


class BudgetExceeded(GatewayError):
    """The hold would take a budget period's spend past its budget (the message names the period
    and what is left)."""

    status = 402
    code = "budget_exceeded"
    type = "insufficient_credits"


class AdminDisabled(GatewayError):
    status = 403
    code = "admin_disabled"
    type = "permission_error"


class Forbidden(GatewayError):
    """The admin identity's role may not do this (the message names the role needed)."""

    status = 403
    code = "forbidden"
    type = "permission_error"


class ModelNotAllowed(GatewayError):
    status = 403
    code = "model_not_allowed"
    type = "permission_error"


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"
    type = "not_found_error"


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    type = "not_found_error"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class RequestTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class Canceled(GatewayError):
    """The caller left or canceled before anything was sent upstream; its hold is released."""

    status = 499  # nginx's "client closed request": nobody is there to read it
    code = "canceled"

    def __init__(self, message: str = "The request was canceled; nothing was charged.") -> None:
        super().__init__(message)


class InternalError(GatewayError):
    status = 500
    code = "internal_error"
    type = "server_error"

    def __init__(self, message: str = "Internal error; nothing was charged.") -> None:
        super().__init__(message)


# The contract's 429 rule: a Retry-After sent to callers is at most this many seconds (the openai
# SDK gives up on larger values instead of waiting).
MAX_RETRY_AFTER_S = 120


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"
    type = "rate_limit_error"


class UpstreamFailed(GatewayError):
    status = 502
    code = "upstream_error"
    type = "upstream_error"


class NoChannelAvailable(GatewayError):
    status = 503
    code = "no_channel_available"
    type = "upstream_error"


class RateLimiterUnavailable(GatewayError):
    """The Redis that keeps a key's limits did not answer in time: refused before anything is held."""

    status = 503
    code = "rate_limiter_unavailable"
    type = "server_error"


class UpstreamTimedOut(GatewayError):
    status = 504
    code = "upstream_timeout"
    type = "upstream_error"

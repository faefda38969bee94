"""A fake OpenAI Images API (`POST /v1/images/generations`) that answers as OpenAI documents it,
errors included, so an adapter that sends what the real API refuses fails here too.

What it enforces, per model family (docs/providers/openai.md has the sources):
- GPT Image models refuse `response_format` with OpenAI's own 400 (`unknown_parameter`), always
  answer `b64_json`, take `size` from 1024x1024 / 1536x1024 / 1024x1536 / auto (`gpt-image-2`:
  any WxH with sides divisible by 16), `quality` low|medium|high|auto, `background`
  transparent|opaque|auto (transparent needs png or webp, and not on `gpt-image-2`),
  `output_format` png|jpeg|webp, `n` 1..10, and report a `usage` block.
- DALL·E models answer URLs unless `response_format: "b64_json"` (or `urls_always`, like some
  relays); the URLs point at `url_base` + `/files/…`, which this fake serves.
- A wrong key is 401 `invalid_api_key`; an unknown model 404 `model_not_found`; a prompt holding
  `BLOCKED_WORD` 400 `moderation_blocked`; `out_of_quota` makes every call 429
  `insufficient_quota`, `rate_limited` 429 `rate_limit_exceeded` with a Retry-After.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.support.fakes.upstream import Received, Reply

GENERATIONS = "/v1/images/generations"
BLOCKED_WORD = "forbidden-thing"
GPT_IMAGE_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2")
DALL_E_MODELS = ("dall-e-2", "dall-e-3")
STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
USAGE: dict[str, Any] = {
    "input_tokens": 14,
    "input_tokens_details": {"text_tokens": 14, "image_tokens": 0},
    "output_tokens": 4160,
    "total_tokens": 4174,
}


def image_b64(output_format: str, colour: tuple[int, int, int] = (40, 90, 200)) -> str:
    """A small image in the asked format (the pixel size is not what is tested here)."""
    out = io.BytesIO()
    mode = "RGBA" if output_format in ("png", "webp") else "RGB"
    Image.new(mode, (8, 8), colour).save(out, format={"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[output_format])
    return base64.b64encode(out.getvalue()).decode()


def openai_error(status: int, message: str, *, type_: str, param: str | None = None, code: str | None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


def invalid_value(param: str, value: Any, allowed: tuple[str, ...]) -> Reply:
    supported = ", ".join(f"'{a}'" for a in allowed)
    return openai_error(
        400,
        f"Invalid value: '{value}'. Supported values are: {supported}.",
        type_="invalid_request_error",
        param=param,
        code="invalid_value",
    )


@dataclass
class OpenAIImagesFake:
    api_key: str
    url_base: str = ""  # where DALL·E image URLs point; empty: this server (set by the test)
    out_of_quota: bool = False
    rate_limited: bool = False
    urls_always: bool = False  # DALL·E answers URLs even when asked for b64_json, as some relays do
    served_files: dict[str, bytes] = field(default_factory=dict)

    def __call__(self, received: Received) -> Reply:
        if received.path.startswith("/files/"):
            content = self.served_files.get(received.path)
            return Reply(body=content, headers={"content-type": "image/png"}) if content else Reply(404, {})
        if (received.method, received.path) != ("POST", GENERATIONS):
            return openai_error(404, "Invalid URL", type_="invalid_request_error", code=None)
        if received.headers.get("authorization") != f"Bearer {self.api_key}":
            return openai_error(
                401,
                "Incorrect API key provided: sk-wron*****. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                type_="invalid_request_error",
                code="invalid_api_key",
            )
        if self.out_of_quota:
            return openai_error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                type_="insufficient_quota",
                code="insufficient_quota",
            )
        if self.rate_limited:
            reply = openai_error(
                429,
                "Rate limit reached for gpt-image-1 on images per minute: Limit 5, Used 5.",
                type_="requests",
                code="rate_limit_exceeded",
            )
            reply.headers["retry-after"] = "7"
            return reply
        body = received.json if isinstance(received.json, dict) else {}
        model = body.get("model", "dall-e-2")
        if model in GPT_IMAGE_MODELS:
            return self._gpt_image(model, body)
        if model in DALL_E_MODELS:
            return self._dall_e(body)
        return openai_error(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            type_="invalid_request_error",
            param="model",
            code="model_not_found",
        )

    def _gpt_image(self, model: str, body: dict[str, Any]) -> Reply:
        for name in ("response_format", "style"):  # DALL·E parameters the GPT Image models refuse
            if name in body:
                return openai_error(
                    400,
                    f"Unknown parameter: '{name}'.",
                    type_="invalid_request_error",
                    param=name,
                    code="unknown_parameter",
                )
        size = body.get("size", "auto")
        if model == "gpt-image-2":
            if size != "auto" and not _free_size(size):
                return invalid_value("size", size, ("auto", "WxH, both sides multiples of 16"))
        elif size not in STANDARD_SIZES:
            return invalid_value("size", size, STANDARD_SIZES)
        checks = {
            "quality": ("low", "medium", "high", "auto"),
            "background": ("transparent", "opaque", "auto"),
            "output_format": ("png", "jpeg", "webp"),
            "moderation": ("low", "auto"),
        }
        for name, allowed in checks.items():
            if name in body and body[name] not in allowed:
                return invalid_value(name, body[name], allowed)
        output_format = body.get("output_format", "png")
        background = body.get("background", "auto")
        if background == "transparent" and (model == "gpt-image-2" or output_format == "jpeg"):
            return openai_error(
                400,
                f"Transparent background is not supported for this model or output format ({output_format}).",
                type_="invalid_request_error",
                param="background",
                code="invalid_value",
            )
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            return invalid_value("n", n, ("1..10",))
        if BLOCKED_WORD in str(body.get("prompt", "")):
            return openai_error(
                400,
                "Your request was rejected by the safety system. safety_violations=[violence].",
                type_="image_generation_user_error",
                code="moderation_blocked",
            )
        return Reply(
            json={
                "created": 1763600000,
                "background": "opaque" if background == "auto" else background,
                "output_format": output_format,
                "quality": "medium" if body.get("quality", "auto") == "auto" else body["quality"],
                "size": "1024x1024" if size == "auto" else size,
                "data": [{"b64_json": image_b64(output_format)} for _ in range(n)],
                "usage": {**USAGE, "output_tokens": USAGE["output_tokens"] * n},
            }
        )

    def _dall_e(self, body: dict[str, Any]) -> Reply:
        for name in ("output_format", "background", "moderation"):  # GPT Image parameters
            if name in body:
                return openai_error(
                    400, f"Unknown parameter: '{name}'.", type_="invalid_request_error", param=name, code=None
                )
        n = body.get("n", 1)
        if body.get("response_format", "url") == "b64_json" and not self.urls_always:
            return Reply(json={"created": 1763600000, "data": [{"b64_json": image_b64("png")} for _ in range(n)]})
        data = []
        for index in range(n):
            path = f"/files/img-{len(self.served_files) + 1}-{index}.png"
            self.served_files[path] = base64.b64decode(image_b64("png", (20, 200, 20)))
            data.append({"url": f"{self.url_base}{path}?se=2026-12-02T03%3A00%3A00Z&sig=abc"})
        return Reply(json={"created": 1763600000, "data": data})


def _free_size(size: object) -> bool:
    if not isinstance(size, str) or "x" not in size:
        return False
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return False
    w, h = int(width), int(height)
    return w % 16 == 0 and h % 16 == 0 and max(w, h) <= 3840 and max(w, h) <= 3 * min(w, h)

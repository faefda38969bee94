"""A fake Ideogram 3.0 API (`POST /v1/ideogram-v3/generate`) behind a FakeUpstream on 127.0.0.1,
answering as Ideogram documents it (docs/providers/ideogram.md has the sources), so an adapter that
sends what the real API would refuse fails here too.

What it enforces: the key in `Api-Key` (else 401); a multipart/form-data body whose parts are plain
fields (no filename); `prompt` required; `aspect_ratio` (written `16x9`) and `resolution` from
Ideogram's lists and never both; `rendering_speed` TURBO|DEFAULT|QUALITY; `magic_prompt`
AUTO|ON|OFF; `num_images` 1..8; `seed` 0..2147483647; any other field is a 400. A prompt holding
`BLOCKED_WORD` is Ideogram's 422 (failed the safety check); `error` answers every call with that
reply instead.

Images come back as URLs into this same server (`/api/images/ephemeral/…`), which serves them as
PNG; `withheld` lists the indexes answered as unsafe (`is_image_safe: false`, empty URL) and
`url_for` can aim an image's URL anywhere (an expired one, a sentinel, a metadata address).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64

GENERATE = "/v1/ideogram-v3/generate"
IMAGES = "/api/images/ephemeral/"
BLOCKED_WORD = "forbidden-thing"
PNG = base64.b64decode(tiny_png_b64((240, 200, 20)))
RATIO_SIZES = {  # Ideogram's own resolution for each ratio it is asked for (the ones tests use)
    "1x1": "1024x1024",
    "16x9": "1312x736",
    "9x16": "736x1312",
    "4x3": "1152x864",
    "3x4": "864x1152",
}
ASPECT_RATIOS = (
    "1x3",
    "3x1",
    "1x2",
    "2x1",
    "9x16",
    "16x9",
    "10x16",
    "16x10",
    "2x3",
    "3x2",
    "3x4",
    "4x3",
    "4x5",
    "5x4",
    "1x1",
)
RESOLUTIONS = ("1024x1024", "1312x736", "736x1312", "1152x864", "864x1152", "1536x640", "640x1536", "1280x800")
FIELDS = frozenset(
    {"prompt", "negative_prompt", "seed", "aspect_ratio", "resolution", "rendering_speed", "magic_prompt", "num_images"}
    | {"color_palette", "style_codes", "style_type", "style_reference_images"}
)


def ideogram_error(status: int, message: str) -> Reply:
    return Reply(status, {"error": message})


@dataclass
class Form:
    """One generate call as the fake parsed it."""

    fields: dict[str, str]
    names: list[str]  # in the order sent, repeated names included
    filenames: list[str | None]
    headers: dict[str, str]


@dataclass
class IdeogramFake:
    upstream: FakeUpstream
    api_key: str
    withheld: set[int] = field(default_factory=set)
    url_for: Callable[[str, int], str] | None = None  # (this server's URL, index) -> the image's URL
    error: Reply | None = None
    # Keys the fake knows but answers otherwise (an account out of credit: 402), key -> reply.
    accounts: dict[str, Reply] = field(default_factory=dict)
    forms: list[Form] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.upstream.respond = self

    def __call__(self, received: Received) -> Reply:
        if received.method == "GET" and received.path.startswith(IMAGES):
            self.fetched.append(received.path)
            if received.path.endswith("/expired.png"):
                return Reply(404, body=b"Not Found", headers={"content-type": "text/plain"})
            return Reply(body=PNG, headers={"content-type": "image/png"})
        if (received.method, received.path) != ("POST", GENERATE):
            return ideogram_error(404, "Not Found")
        key = received.headers.get("api-key", "")
        if key in self.accounts:
            return self.accounts[key]
        if key != self.api_key:
            return ideogram_error(401, "Unauthorized: invalid or missing Api-Key")
        form = parse_form(received)
        if isinstance(form, Reply):
            return form
        self.forms.append(form)
        if self.error is not None:
            return self.error
        problem = check_form(form)
        if problem is not None:
            return ideogram_error(400, problem)
        if BLOCKED_WORD in form.fields["prompt"]:
            return ideogram_error(422, "Prompt or provided image failed the safety checks")
        return Reply(json=self.answer(form))

    def answer(self, form: Form) -> dict[str, object]:
        fields = form.fields
        resolution = fields.get("resolution") or RATIO_SIZES.get(fields.get("aspect_ratio", "1x1"), "1024x1024")
        data = []
        for index in range(int(fields.get("num_images", "1"))):
            unsafe = index in self.withheld
            url = "" if unsafe else self.image_url(index)
            data.append(
                {
                    "url": url,
                    "is_image_safe": not unsafe,
                    "prompt": fields["prompt"],
                    "resolution": resolution,
                    "seed": int(fields.get("seed", "12345")),
                    "style_type": "GENERAL",
                }
            )
        return {"created": "2026-12-02T02:00:00.000000+00:00", "data": data}

    def image_url(self, index: int) -> str:
        if self.url_for is not None:
            return self.url_for(self.upstream.url, index)
        return f"{self.upstream.url}{IMAGES}img-{len(self.forms)}-{index}.png?exp=1764644400&signature=abc"


def parse_form(received: Received) -> Form | Reply:
    content_type = received.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data") or "boundary=" not in content_type:
        return ideogram_error(400, f"expected multipart/form-data, got {content_type or 'no content type'}")
    body = received.json if isinstance(received.json, str) else ""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body.encode())
    if not message.is_multipart():
        return ideogram_error(400, "the body is not a multipart form")
    names: list[str] = []
    filenames: list[str | None] = []
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return ideogram_error(400, "a part without a name")
        names.append(name)
        filenames.append(part.get_filename())
        fields[name] = _text(part)
    return Form(fields=fields, names=names, filenames=filenames, headers=received.headers)


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else ""


def check_form(form: Form) -> str | None:
    """Ideogram's 400 for a form it would refuse, or None."""
    fields = form.fields
    unknown = sorted(set(form.names) - FIELDS)
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    if len(set(form.names)) != len(form.names):
        return "a field was sent twice"
    if any(filename is not None for filename in form.filenames):
        return "text fields must not be sent as files"
    if not fields.get("prompt"):
        return "prompt is required"
    if "aspect_ratio" in fields and "resolution" in fields:
        return "aspect_ratio cannot be used in conjunction with resolution"
    enums = {
        "aspect_ratio": ASPECT_RATIOS,
        "resolution": RESOLUTIONS,
        "rendering_speed": ("TURBO", "DEFAULT", "QUALITY"),
        "magic_prompt": ("AUTO", "ON", "OFF"),
    }
    for name, allowed in enums.items():
        if name in fields and fields[name] not in allowed:
            return f"{name}: {fields[name]!r} is not one of {', '.join(allowed)}"
    for name, low, high in (("num_images", 1, 8), ("seed", 0, 2_147_483_647)):
        if name in fields and not (fields[name].isdigit() and low <= int(fields[name]) <= high):
            return f"{name} must be an integer from {low} to {high}"
    return None

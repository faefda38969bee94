"""A fake Imagen `:predict` upstream that is never the bottleneck of a benchmark.

A raw asyncio HTTP/1.1 keep-alive server on uvloop: each answer is a precomputed byte string
(base64 of random bytes, so nothing along the way can compress it), built once per
(image size, sampleCount) and then written as is. It honours `parameters.sampleCount` and
`parameters.sampleImageSize`; the prompt may carry directives for the benchmark:

- `delay=S`  answer after S seconds (the slow upstream of the capacity scenario);
- `b64=N`    make each image N base64 characters instead of the size's default.

`GET /_bench/stats` reports requests served and the peak number in flight (a delayed answer is
in flight until written); `POST /_bench/reset` zeroes them. Run: `python -m
tests.benchmarks.fake_upstream --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
from dataclasses import dataclass
from typing import Any, cast

import orjson
import uvloop

# Base64 characters per image: a 1K PNG is ~1.5 MB in base64, a 2K one ~5 MB (four = ~20 MB).
IMAGE_B64_CHARS = {"1K": 1_500_000, "2K": 5_000_000}
HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024


@dataclass
class Stats:
    served: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    connections: int = 0

    def started(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def finished(self, *, delivered: bool) -> None:
        self.in_flight -= 1
        self.served += delivered


class Answers:
    """Whole HTTP responses, built on first use and reused for every later request."""

    def __init__(self) -> None:
        self._images: dict[int, bytes] = {}
        self._responses: dict[tuple[int, int], bytes] = {}

    def predict(self, b64_chars: int, count: int) -> bytes:
        key = (b64_chars, count)
        response = self._responses.get(key)
        if response is None:
            item = b'{"bytesBase64Encoded":"' + self._image(b64_chars) + b'","mimeType":"image/png"}'
            response = http_response(200, b'{"predictions":[' + b",".join([item] * count) + b"]}")
            self._responses[key] = response
        return response

    def _image(self, b64_chars: int) -> bytes:
        image = self._images.get(b64_chars)
        if image is None:
            # Random bytes do not compress: the gateway moves every byte of the real size.
            # A PNG signature first: the gateway delivers only what its bytes show to be an image.
            image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(max(b64_chars * 3 // 4 - 8, 8)))
            self._images[b64_chars] = image
        return image


def http_response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def error_response(status: int, message: str) -> bytes:
    return http_response(status, orjson.dumps({"error": {"code": status, "message": message, "status": "ERROR"}}))


@dataclass(frozen=True)
class Reply:
    payload: bytes
    delay_s: float = 0.0
    counted: bool = True  # a `:predict` call, not a benchmark control request


def predict_reply(body: bytes, answers: Answers) -> Reply:
    try:
        request: Any = orjson.loads(body)
        parameters = request.get("parameters", {})
        count = int(parameters.get("sampleCount", 4))
        size = str(parameters.get("sampleImageSize", "1K")).upper()
        prompt = str(request["instances"][0]["prompt"])
    except (orjson.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError, ValueError):
        return Reply(error_response(400, "not an Imagen :predict body"))
    directives = dict(word.split("=", 1) for word in prompt.split() if "=" in word)
    b64_chars = int(directives.get("b64", IMAGE_B64_CHARS.get(size, IMAGE_B64_CHARS["1K"])))
    return Reply(answers.predict(b64_chars, count), float(directives.get("delay", 0)))


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection. Requests are answered in order; none are pipelined by the
    clients used here (httpx, wrk), so reading pauses while an answer is delayed."""

    def __init__(self, answers: Answers, stats: Stats) -> None:
        self.answers = answers
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pending: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.connections -= 1
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
            self.stats.finished(delivered=False)  # the caller gave up on a delayed answer

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self.pending is None and self.transport is not None:
            request = self._next_request()
            if request is None:
                return
            self._answer(*request)

    def _next_request(self) -> tuple[str, bytes] | None:
        end = self.buffer.find(HEAD_END)
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES and self.transport is not None:
                self.transport.close()
            return None
        head = bytes(self.buffer[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        total = end + len(HEAD_END) + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + len(HEAD_END) : total])
        del self.buffer[:total]
        return head.split("\r\n", 1)[0], body

    def _answer(self, request_line: str, body: bytes) -> None:
        method, _, rest = request_line.partition(" ")
        path = rest.rsplit(" ", 1)[0].split("?", 1)[0]
        if method == "POST" and path.endswith(":predict"):
            reply = predict_reply(body, self.answers)
        elif path == "/_bench/stats":
            reply = Reply(http_response(200, orjson.dumps(self._stats_body())), counted=False)
        elif method == "POST" and path == "/_bench/reset":
            self.stats.served = self.stats.peak_in_flight = 0
            reply = Reply(http_response(200, b"{}"), counted=False)
        else:
            reply = Reply(error_response(404, f"no route {method} {path}"), counted=False)
        if reply.counted:
            self.stats.started()
        if reply.delay_s > 0:
            self.pending = asyncio.get_running_loop().call_later(reply.delay_s, self._send_delayed, reply)
        else:
            self._send(reply)

    def _stats_body(self) -> dict[str, int]:
        return {
            "served": self.stats.served,
            "in_flight": self.stats.in_flight,
            "peak_in_flight": self.stats.peak_in_flight,
            "connections": self.stats.connections,
        }

    def _send_delayed(self, reply: Reply) -> None:
        self.pending = None
        self._send(reply)
        self._serve_buffered()

    def _send(self, reply: Reply) -> None:
        if reply.counted:
            self.stats.finished(delivered=True)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply.payload)


async def serve(host: str, port: int) -> None:
    answers, stats = Answers(), Stats()
    # Build the common answers now so the first measured requests do not pay for it.
    for size in IMAGE_B64_CHARS.values():
        for count in range(1, 5):
            answers.predict(size, count)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(answers, stats), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

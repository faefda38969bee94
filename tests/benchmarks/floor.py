"""The ceiling any Python gateway can reach on this machine, to read the gateway's scenario-1
figures (one 1.5 MB image per request, 32 connections) against. Each proxy, in its own process,
does only what every gateway must: read the client's POST, forward it over a kept-alive upstream
connection, read the whole answer, write it back; no auth, no database, no JSON unless said:

- `raw`           uvloop protocols and httptools, one upstream connection per client connection;
                  the answer's pieces are written back as received, never joined;
- `raw-join`      the same, joining the answer into one bytes first (as any JSON parsing needs);
- `aiohttp`       an aiohttp.web handler forwarding with one aiohttp ClientSession;
- `uvicorn`       uvicorn (uvloop, httptools) with a bare ASGI app forwarding with aiohttp;
- `uvicorn-json`  the same plus `orjson.loads` of the answer and `orjson.dumps` of a new body
                  holding the base64 string: the least JSON work a translating gateway does;
- `<variant>+malloc`  with glibc's mmap and trim thresholds raised (MALLOC_MMAP_THRESHOLD_,
                  MALLOC_TRIM_THRESHOLD_), so 1.5 MB buffers are not mapped and page-faulted anew.

    .venv/bin/python -m tests.benchmarks.floor [--duration 10] [--variants raw,aiohttp,...]

The machine may be shared: each proxy run comes right after a run straight at the fake upstream
("direct"), and its ratio and added p50 are taken to that one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import httpx
import orjson
import uvicorn
import uvloop
from aiohttp import web

from tests.benchmarks.loadgen import LoadResult, LoadSpec, run_wrk
from tests.benchmarks.procs import cpu_seconds, machine_busy_seconds, process_tree, raise_fd_limit
from tests.benchmarks.report import python_speed_ms
from tests.benchmarks.scenarios import UPSTREAM_MODEL, Scenario
from tests.benchmarks.stack import REPO_ROOT, fake_upstream
from tests.support.processes import free_port, stop

VARIANTS = ("raw", "raw-join", "raw-join+malloc", "aiohttp", "uvicorn", "uvicorn-json", "uvicorn-json+malloc")
# The values app/memory.py applies in the gateway (32 MB is glibc's ceiling for the mmap threshold).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}
PATH = f"/v1beta/models/{UPSTREAM_MODEL}:predict"
BODY = Scenario("s1", "one 1K image", connections=32, images=1, image_size="1K").direct_body()
JSON = {"Content-Type": "application/json"}
HEAD = b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class ClientSide(asyncio.Protocol):
    """(raw) One client connection, forwarding over its own kept-alive upstream connection."""

    transport: asyncio.Transport

    def __init__(self, host: str, port: int, *, join: bool) -> None:
        self.address, self.join = (host, port), join
        self.parser = httptools.HttpRequestParser(self)
        self.url, self.body = b"", bytearray()
        self.upstream: asyncio.Transport | None = None
        self.pending: bytes | None = None  # a request that came before the upstream connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            connection = await asyncio.get_running_loop().create_connection(lambda: UpstreamSide(self), *self.address)
        except OSError:
            self.transport.close()
            return
        self.upstream = connection[0]
        if self.transport.is_closing():
            self.upstream.close()
        elif self.pending is not None:
            self.upstream.write(self.pending)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)  # raising closes the connection

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        head = b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        request = head % (self.url, self.address[0].encode(), self.address[1], len(self.body)) + self.body
        self.url, self.body, self.pending = b"", bytearray(), None
        if self.upstream is None:
            self.pending = request
        else:
            self.upstream.write(request)

    def respond(self, status: int, chunks: list[bytes]) -> None:
        if not self.transport.is_closing():
            if self.join:
                chunks = [b"".join(chunks)]
            self.transport.writelines([HEAD % (status, sum(map(len, chunks))), *chunks])


class UpstreamSide(asyncio.Protocol):
    def __init__(self, client: ClientSide) -> None:
        self.client, self.chunks = client, list[bytes]()
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        chunks, self.chunks = self.chunks, []
        self.client.respond(self.parser.get_status_code(), chunks)


async def serve_raw(port: int, upstream: str, *, join: bool) -> None:
    host, upstream_port = urlsplit(upstream).hostname or "", urlsplit(upstream).port or 80
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide(host, upstream_port, join=join), "127.0.0.1", port)
    await server.serve_forever()


async def serve_aiohttp(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.post(upstream + request.path_qs, data=body, headers=JSON) as answer:
            data = await answer.read()
        return web.Response(body=data, status=answer.status, content_type="application/json")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def asgi_app(upstream: str, *, json_work: bool) -> Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]:
    sessions: list[aiohttp.ClientSession] = []  # made on first use, inside uvicorn's loop

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        body, more = bytearray(), True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        async with sessions[0].post(upstream + scope["path"], data=bytes(body), headers=JSON) as answer:
            data, status = await answer.read(), answer.status
        if json_work and status == 200:
            images = [{"b64_json": p["bytesBase64Encoded"]} for p in orjson.loads(data)["predictions"]]
            data = orjson.dumps({"created": int(time.time()), "data": images})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


def serve(variant: str, port: int, upstream: str) -> None:
    if variant.startswith("raw"):
        uvloop.run(serve_raw(port, upstream, join=variant == "raw-join"))
    elif variant == "aiohttp":
        uvloop.run(serve_aiohttp(port, upstream))
    else:
        app = asgi_app(upstream, json_work=variant == "uvicorn-json")
        uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", lifespan="off",
                    access_log=False, log_level="warning")  # fmt: skip


@contextmanager
def proxy(variant: str, upstream: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """A proxy process, once it has forwarded one whole answer: its base URL and pid."""
    name, port, log_path = variant.removesuffix("+malloc"), free_port(), workdir / f"{variant}.log"
    env = dict(os.environ, **(MALLOC_ENV if variant.endswith("+malloc") else {}))
    command = [sys.executable, "-m", "tests.benchmarks.floor", "--serve", name, "--port", str(port), "--upstream"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, upstream], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base_url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if len(httpx.post(base_url + PATH, json=BODY, timeout=5).raise_for_status().content) > 1_000_000:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"proxy {variant} did not start:\n{log_path.read_text()}")
            yield base_url, process.pid
        finally:
            stop(process)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True)
class Run:
    load: LoadResult
    proxy_cpu_s: float
    upstream_cpu_s: float
    other_cores: float  # CPU that unrelated processes used meanwhile


def measure(url: str, pid: int | None, upstream_pid: int, args: argparse.Namespace) -> Run:
    """One wrk run after a warm-up, with the CPU the proxy, the upstream and everything else used."""
    run_wrk(LoadSpec(url + PATH, BODY, args.connections, args.warm_up), args.workdir)
    tree = process_tree(pid) if pid is not None else []
    before = (cpu_seconds(tree), cpu_seconds([upstream_pid]), machine_busy_seconds())
    r = run_wrk(LoadSpec(url + PATH, BODY, args.connections, args.duration), args.workdir)
    proxy_cpu, upstream_cpu = cpu_seconds(tree) - before[0], cpu_seconds([upstream_pid]) - before[1]
    other = max(0.0, machine_busy_seconds() - before[2] - proxy_cpu - upstream_cpu - r.client_cpu_s) / r.duration_s
    return Run(r, proxy_cpu, upstream_cpu, other)


def row(variant: str, run: Run, direct: Run) -> str:
    r, d, n = run.load, direct.load, max(1, run.load.requests)
    print(f"… {variant}: {r.rps:,.0f} req/s (direct {d.rps:,.0f}), p50 {r.p50_ms:.1f} ms", file=sys.stderr)
    return (
        f"| {variant} | {r.rps:,.0f} | {d.rps:,.0f} | {r.rps / d.rps:.2f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} "
        f"| {r.p99_ms:.1f} | {d.p50_ms:.1f} | {r.p50_ms - d.p50_ms:+.1f} | {1000 * run.proxy_cpu_s / n:.2f} "
        f"| {1000 * run.upstream_cpu_s / n:.2f} | {r.error_count} | {run.other_cores:.2f} / {direct.other_cores:.2f} "
        f"| {loadavg()} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warm-up", type=float, default=2.0, help="seconds of load before each measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; any may end in +malloc")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: be one proxy
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.upstream)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed: run tests/benchmarks/setup.sh", file=sys.stderr)
        return 2
    raise_fd_limit()
    notes = [
        f"- {args.connections} connections, {args.duration:g} s per run after {args.warm_up:g} s of warm-up; "
        "ratio and added p50 are to the direct run just before",
        f"- load average before: {loadavg()}; `sum(range(10**6))`: {python_speed_ms():.1f} ms (quiet machine: ~19)",
        f"- other load: CPU used meanwhile by unrelated processes, in cores (of {os.cpu_count()})",
        "",
    ]
    args.workdir = Path(tempfile.mkdtemp(prefix="igw-floor-"))
    rows = [
        "| variant | req/s | direct req/s | × direct | p50 ms | p95 ms | p99 ms | direct p50 ms | added p50 ms "
        "| proxy CPU ms/req | upstream CPU ms/req | errors | other load, cores (proxy / direct run) | load avg after |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    try:
        with fake_upstream(args.workdir / "upstream.log") as upstream:
            for variant in [v for v in args.variants.split(",") if v]:
                with proxy(variant, upstream.base_url, args.workdir) as (url, pid):
                    direct = measure(upstream.base_url, None, upstream.process.pid, args)
                    rows.append(row(variant, measure(url, pid, upstream.process.pid, args), direct))
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print("\n".join(["", *notes, *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

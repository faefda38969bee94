"""Driving load with wrk (a C load generator, so the client is never the slow part) and reading
its answer: the `--latency` distribution it prints, plus the exact summary our Lua `done()` hook
prints (wrk's table has no p95, and its error counts are easier to read there)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

LUA_SCRIPT = Path(__file__).with_name("post.lua")
_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0}
_DISTRIBUTION_LINE = re.compile(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$")


@dataclass(frozen=True)
class LoadSpec:
    url: str
    body: dict[str, object]
    connections: int
    duration_s: float
    threads: int = 1
    key: str = ""
    timeout_s: float = 10.0
    once: bool = False  # one request per connection (the capacity scenario)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    bytes: int
    errors: dict[str, int]
    distribution_ms: dict[int, float]  # wrk's own --latency table: 50, 75, 90, 99
    client_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(spec: LoadSpec, workdir: Path) -> LoadResult:
    body_file = workdir / "wrk-body.json"
    body_file.write_bytes(orjson.dumps(spec.body))
    threads = max(1, min(spec.threads, spec.connections))
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_KEY=spec.key)
    if spec.once:
        env["BENCH_ONCE"] = str(spec.connections // threads)
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={spec.connections}",
        f"--duration={max(1, round(spec.duration_s))}s",
        f"--timeout={max(1, round(spec.timeout_s))}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        spec.url,
    ]
    out_file = workdir / "wrk-out.txt"
    with out_file.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        # wait4 instead of wait: it also hands back the CPU time wrk itself used.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    text = out_file.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {text}")
    return parse_wrk_output(text, client_cpu_s=usage.ru_utime + usage.ru_stime)


def parse_wrk_output(text: str, *, client_cpu_s: float = 0.0) -> LoadResult:
    summary_line = next((line for line in text.splitlines() if line.startswith("BENCH_SUMMARY ")), None)
    if summary_line is None:
        raise RuntimeError(f"wrk printed no BENCH_SUMMARY line:\n{text}")
    summary = json.loads(summary_line.removeprefix("BENCH_SUMMARY "))
    distribution = {}
    for line in text.splitlines():
        match = _DISTRIBUTION_LINE.match(line)
        if match:
            distribution[int(match[1])] = float(match[2]) * _UNITS_US[match[3]] / 1000
    return LoadResult(
        requests=summary["requests"],
        duration_s=summary["duration_us"] / 1e6,
        # The --latency table rounds to two decimals of its unit; the hook's values are exact.
        p50_ms=summary["p50_us"] / 1000,
        p95_ms=summary["p95_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        bytes=summary["bytes"],
        errors={name: summary[name] for name in ("connect", "read", "write", "status", "timeout") if summary[name]},
        distribution_ms=distribution,
        client_cpu_s=client_cpu_s,
    )

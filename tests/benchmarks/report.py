"""The benchmark's table and the machine it ran on, as Markdown (readable in a terminal too)."""

from __future__ import annotations

import os
import platform
import subprocess
import timeit
from importlib.metadata import version
from pathlib import Path

from tests.benchmarks.scenarios import Measurement

HEADER = (
    "| db | workers | scenario | req/s direct → gateway (ratio) | direct p50/p95/p99 ms | "
    "gateway p50/p95/p99 ms | added p50/p95/p99 ms | gateway CPU ms/req | upstream CPU ms/req | "
    "gateway RSS MB peak (idle) | upstream peak in flight | errors | other load (cores) |"
)


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("uvicorn", "fastapi", "httpx", "aiohttp", "msgspec", "orjson", "sqlalchemy", "uvloop", "httptools")
    )
    return [
        f"- CPU: {os.cpu_count()} × {cpu} (nproc {len(os.sched_getaffinity(0))})",
        f"- RAM: {mem_kb / 1024 / 1024:.1f} GiB; kernel {platform.release()}",
        f"- Python {platform.python_version()}; {packages}",
        f"- load generator: {wrk[0] if wrk else 'wrk'}",
        f"- Python speed, to scale the CPU figures by: `sum(range(10**6))` takes {python_speed_ms():.1f} ms",
        f"- load average before the run: {Path('/proc/loadavg').read_text().split()[:3]}",
    ]


def python_speed_ms() -> float:
    """A crude single-core yardstick: CPU-time figures scale with it from machine to machine."""
    return 1000 * min(timeit.repeat("sum(range(10**6))", number=1, repeat=7))


def _triple(a: float, b: float, c: float) -> str:
    return f"{a:.1f} / {b:.1f} / {c:.1f}"


def row(m: Measurement) -> str:
    d, g = m.direct, m.through
    if not g.requests:
        return _unanswered_row(m)
    errors = ", ".join(f"{k} {v}" for k, v in g.errors.items()) or "0"
    if m.scenario.once:
        # One request per connection: what matters is how many came back, and the CPU in all.
        total = m.scenario.connections
        throughput = f"answered {d.requests}/{total} → {g.requests}/{total}"
        cpu = f"{m.usage.cpu_s:.1f} s in all | {m.upstream_cpu_s:.1f} s in all"
    else:
        throughput = f"{d.rps:.0f} → {g.rps:.0f} ({m.throughput_ratio:.0%})"
        cpu = f"{m.cpu_ms_per_request:.2f} | {1000 * m.upstream_cpu_s / g.requests:.2f}"
    return (
        f"| {m.backend} | {m.workers} | {m.scenario.name}: {m.scenario.title} | {throughput} "
        f"| {_triple(d.p50_ms, d.p95_ms, d.p99_ms)} | {_triple(g.p50_ms, g.p95_ms, g.p99_ms)} "
        f"| {_triple(m.added_ms('p50_ms'), m.added_ms('p95_ms'), m.added_ms('p99_ms'))} | {cpu} "
        f"| {m.usage.peak_rss_mb:.0f} ({m.usage.idle_rss_mb:.0f}) | {m.upstream_peak_in_flight} | {errors} "
        f"| {m.other_load_cores:.2f} |"
    )


def _unanswered_row(m: Measurement) -> str:
    """A run where the gateway answered nothing: latencies and per-request figures do not exist."""
    d = m.direct
    errors = ", ".join(f"{k} {v}" for k, v in m.through.errors.items()) or "0"
    return (
        f"| {m.backend} | {m.workers} | {m.scenario.name}: {m.scenario.title} | {d.rps:.0f} → 0 "
        f"| {_triple(d.p50_ms, d.p95_ms, d.p99_ms)} | no answer | — "
        f"| {1000 * m.usage.cpu_s:.0f} ms in all | — | {m.usage.peak_rss_mb:.0f} ({m.usage.idle_rss_mb:.0f}) "
        f"| {m.upstream_peak_in_flight} | {errors} | {m.other_load_cores:.2f} |"
    )


def table(measurements: list[Measurement]) -> list[str]:
    separator = "|" + "---|" * (HEADER.count("|") - 1)
    return [HEADER, separator, *(row(m) for m in measurements)]


def verdicts(measurements: list[Measurement]) -> list[str]:
    lines = []
    for m in measurements:
        for text, met in m.verdicts:
            lines.append(
                f"- {'MET   ' if met else 'MISSED'} {m.backend}, {m.workers} worker(s), {m.scenario.name}: {text}"
            )
    return lines


def render(command: str, machine_lines: list[str], measurements: list[Measurement], ledgers: list[str]) -> str:
    parts = [
        "## Machine",
        "",
        *machine_lines,
        "",
        "## Command",
        "",
        f"    {command}",
        "",
        "## Figures",
        "",
        *table(measurements),
        "",
        "## Targets",
        "",
        *verdicts(measurements),
        "",
        "## Money (`image-gateway ledger check` after each run)",
        "",
        *ledgers,
        "",
    ]
    return "\n".join(parts)

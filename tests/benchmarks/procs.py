"""CPU time and memory of a process and its descendants, read from /proc (Linux only).

`image-gateway serve --workers N` with N > 1 is a uvicorn supervisor plus N spawned workers, so
every figure is summed over the whole tree: that is what the machine pays for the gateway.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; children (wrk, servers) inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time every core has spent not idle since boot (first line of /proc/stat)."""
    fields = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def rss_mb(pids: list[int]) -> float:
    return sum(_status_kb(pid, "VmRSS") for pid in pids) / 1024


def hwm_mb(pids: list[int]) -> float:
    """Sum of each process's peak RSS (VmHWM): an upper bound of the tree's peak."""
    return sum(_status_kb(pid, "VmHWM") for pid in pids) / 1024


def reset_hwm(pids: list[int]) -> bool:
    """Start each process's VmHWM afresh (`5` to clear_refs, Linux ≥ 4.0); False if not allowed."""
    try:
        for pid in pids:
            (PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Usage:
    cpu_s: float
    peak_rss_mb: float  # sum of per-process peaks (VmHWM) when resettable, else sampled peak
    sampled_peak_rss_mb: float
    idle_rss_mb: float


class UsageMeter:
    """Measures a process tree between `start()` and `stop()`: CPU time used, and the peak RSS
    both from the kernel's VmHWM and from sampling the summed VmRSS ten times a second."""

    def __init__(self, root: int, interval_s: float = 0.1) -> None:
        self.pids = process_tree(root)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._sampled_peak = 0.0
        self._cpu_start = 0.0
        self._idle = 0.0
        self._hwm_reset = False

    def start(self) -> None:
        self._idle = rss_mb(self.pids)
        self._hwm_reset = reset_hwm(self.pids)
        self._cpu_start = cpu_seconds(self.pids)
        self._thread.start()

    def stop(self) -> Usage:
        self._stop.set()
        self._thread.join()
        cpu = cpu_seconds(self.pids) - self._cpu_start
        sampled = max(self._sampled_peak, rss_mb(self.pids))
        peak = hwm_mb(self.pids) if self._hwm_reset else sampled
        return Usage(cpu_s=cpu, peak_rss_mb=peak, sampled_peak_rss_mb=sampled, idle_rss_mb=self._idle)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled_peak = max(self._sampled_peak, rss_mb(self.pids))
            time.sleep(self.interval_s)

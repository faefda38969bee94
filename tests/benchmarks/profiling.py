"""Sampling the gateway with py-spy while it is under load, and reading the samples back.

py-spy is not a project dependency: `.venv/bin/pip install py-spy`. The output is py-spy's raw
"collapsed stacks" (one `frame;frame;… count` line per distinct stack), which speedscope.app and
flamegraph.pl open directly, and which `python -m tests.benchmarks.profiling FILE` summarises as
the functions with the most inclusive and self time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Profiler:
    def __init__(self, directory: Path, rate_hz: int = 250) -> None:
        found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if found is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.py_spy = found
        self.directory = directory
        self.rate_hz = rate_hz
        directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def recording(self, pids: list[int], label: str) -> Iterator[None]:
        """Sample `pids[0]` and its subprocesses (the uvicorn workers) until the block ends."""
        output = self.directory / f"{label}.txt"
        # --gil: only the thread running Python is sampled. The event loop is what saturates; the
        # aiosqlite threads, blocked inside SQLite's busy handler, would otherwise look busy.
        command = [self.py_spy, "record", "--pid", str(pids[0]), "--subprocesses", "--gil", "--format", "raw"]
        command += ["--rate", str(self.rate_hz), "--output", str(output)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            # py-spy writes its file when interrupted, as after Ctrl-C.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        print(f"profile: {output}", file=sys.stderr)


def _function(frame: str) -> str:
    """`name (path/to/file.py:123)` → `name (path/to/file.py)`: lines of one function together."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise(path: Path, top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(summarise(Path(argument)))

"""`make bench`: requests/s, latency, CPU and memory through the gateway versus straight to the
upstream, in the same run, for the scenarios of issue 8.

    .venv/bin/python -m tests.benchmarks.run [--workers 1,2] [--backends sqlite,postgres]
        [--scenarios s1,s1-serial,s2,s3] [--duration 12] [--markdown out.md] [--profile DIR]

Each (database, worker count) pair gets a fresh database, configured through the CLI; each
scenario gets a freshly started `image-gateway serve`, a warm-up, then one wrk run straight to
the fake upstream and one through the gateway. `image-gateway ledger check` must pass after
every pair: the exit status is 1 when it does not. Missed performance targets are reported, not
failed: the numbers are for people to read.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from tests.benchmarks import report
from tests.benchmarks.loadgen import LoadResult, LoadSpec, run_wrk
from tests.benchmarks.procs import UsageMeter, cpu_seconds, machine_busy_seconds, raise_fd_limit
from tests.benchmarks.profiling import Profiler
from tests.benchmarks.scenarios import BACKEND_SCENARIOS, UPSTREAM_MODEL, Measurement, Scenario, judge, scenarios
from tests.benchmarks.stack import (
    Gateway,
    Upstream,
    configure_gateway,
    fake_upstream,
    fresh_database,
    gateway,
    ledger_check,
    open_holds,
    postgres_reachable,
)

WARM_UP_S = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="gateway worker counts to measure, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--scenarios", default="s1,s1-serial,s2,s3", help="subset of s1,s1-serial,s2,s3 (and s1-small)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per throughput measurement")
    parser.add_argument("--capacity-connections", type=int, default=2000)
    parser.add_argument("--capacity-delay", type=float, default=10.0, help="seconds the upstream holds each answer")
    parser.add_argument(
        "--capacity-image-b64", type=int, default=16_384, help="image size (base64 characters) in the capacity run"
    )
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument("--profile", type=Path, help="py-spy each gateway run into this directory")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: run tests/benchmarks/setup.sh (or `make bench`)", file=sys.stderr)
        return 2
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="igw-bench-"))
    machine_lines = report.machine()
    chosen = scenarios(args.capacity_connections, args.capacity_delay, args.capacity_image_b64)
    wanted = [name for name in args.scenarios.split(",") if name]
    measurements: list[Measurement] = []
    ledgers: list[str] = []
    profiler = Profiler(args.profile) if args.profile else None
    money_ok = True
    try:
        with fake_upstream(workdir / "upstream.log") as upstream:
            for backend in [b for b in args.backends.split(",") if b]:
                if backend == "postgres" and not postgres_reachable():
                    print("PostgreSQL is not reachable: skipping it (set BENCH_POSTGRES_URL)", file=sys.stderr)
                    continue
                for workers in [int(w) for w in args.workers.split(",") if w]:
                    names = [n for n in BACKEND_SCENARIOS[backend] if n in wanted]
                    run = Run(backend, workers, workdir / f"{backend}-w{workers}", upstream, args.duration, profiler)
                    ok, ledger = run.measure_all([chosen[n] for n in names], measurements)
                    money_ok &= ok
                    ledgers.append(ledger)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs and databases kept in {workdir}", file=sys.stderr)
    command = shlex.join([".venv/bin/python", "-m", "tests.benchmarks.run", *(argv or sys.argv[1:])])
    text = report.render(command, machine_lines, measurements, ledgers)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if money_ok else 1


class Run:
    """One database and worker count: every scenario, then the money check."""

    def __init__(
        self,
        backend: str,
        workers: int,
        workdir: Path,
        upstream: Upstream,
        duration_s: float,
        profiler: Profiler | None,
    ) -> None:
        self.backend = backend
        self.workers = workers
        self.workdir = workdir
        self.upstream = upstream
        self.duration_s = duration_s
        self.profiler = profiler
        workdir.mkdir(parents=True)

    def measure_all(self, chosen: list[Scenario], into: list[Measurement]) -> tuple[bool, str]:
        with fresh_database(self.backend, self.workdir) as url:
            env, key = configure_gateway(url, self.workdir / "data", self.upstream)
            for scenario in chosen:
                print(f"… {self.backend}, {self.workers} worker(s), {scenario.name}: {scenario.title}", file=sys.stderr)
                with gateway(env, self.workers, self.workdir / "gateway.log") as gw:
                    measurement = self.measure(gw, key, scenario)
                measurement.verdicts = judge(measurement)
                into.append(measurement)
                print(report.row(measurement), file=sys.stderr)
            ok, output = ledger_check(env)
            pending = open_holds(url)
        verdict = "exit 0, every invariant holds" if ok else f"FAILED:\n\n```\n{output}\n```"
        line = f"- {self.backend}, {self.workers} worker(s): {verdict}; holds still open after shutdown: {pending}"
        print(line, file=sys.stderr)  # now, not only in the final report: a long run can be cut short
        return ok, line

    def measure(self, gw: Gateway, key: str, scenario: Scenario) -> Measurement:
        self._warm_up(gw, key, scenario)
        direct = self._load(
            f"{self.upstream.base_url}/v1beta/models/{UPSTREAM_MODEL}:predict", scenario, "", direct=True
        )
        self.upstream.reset()
        meter = UsageMeter(gw.process.pid)
        upstream_cpu = cpu_seconds([self.upstream.process.pid])
        machine_busy = machine_busy_seconds()
        meter.start()
        with self.profiler.recording(meter.pids, self._label(scenario)) if self.profiler else nullcontext():
            through = self._load(f"{gw.base_url}/v1/images/generations", scenario, key, direct=False)
        usage = meter.stop()
        upstream_cpu = cpu_seconds([self.upstream.process.pid]) - upstream_cpu
        # Whatever else the machine ran meanwhile (other jobs) competed with the gateway for cores.
        ours = usage.cpu_s + upstream_cpu + through.client_cpu_s
        other_cores = max(0.0, machine_busy_seconds() - machine_busy - ours) / through.duration_s
        peak = self.upstream.stats()["peak_in_flight"]
        self.upstream.wait_idle()
        return Measurement(
            self.backend, self.workers, scenario, direct, through, usage, upstream_cpu, peak, other_cores
        )

    def _warm_up(self, gw: Gateway, key: str, scenario: Scenario) -> None:
        """Pools filled, caches loaded, every worker started, before anything is measured."""
        spec = LoadSpec(
            url=f"{gw.base_url}/v1/images/generations",
            body=scenario.gateway_body(warm_up=True),
            connections=min(scenario.connections, 64) if scenario.once else max(scenario.connections, 4),
            duration_s=WARM_UP_S,
            key=key,
        )
        run_wrk(spec, self.workdir)
        self.upstream.wait_idle()

    def _load(self, url: str, scenario: Scenario, key: str, *, direct: bool) -> LoadResult:
        duration = self._duration(scenario, direct=direct)
        spec = LoadSpec(
            url=url,
            body=scenario.direct_body() if direct else scenario.gateway_body(),
            connections=scenario.connections,
            threads=scenario.threads,
            duration_s=duration,
            key=key,
            timeout_s=duration if scenario.once else 10.0,
            once=scenario.once,
        )
        result = run_wrk(spec, self.workdir)
        self.upstream.wait_idle()
        return result

    def _duration(self, scenario: Scenario, *, direct: bool) -> float:
        if not scenario.once:
            return self.duration_s
        # Long enough for every held request to come back even if the gateway queues half of them.
        return scenario.delay_s + 3 if direct else 2 * scenario.delay_s + 4

    def _label(self, scenario: Scenario) -> str:
        return f"{self.backend}-w{self.workers}-{scenario.name}"


if __name__ == "__main__":
    sys.exit(main())

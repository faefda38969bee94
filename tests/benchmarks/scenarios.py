"""What is measured (the scenarios of issue 8) and the targets each is judged against."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.benchmarks.loadgen import LoadResult
from tests.benchmarks.procs import Usage

UPSTREAM_MODEL = "imagen-4.0-generate-001"
PROMPT = "a lighthouse at dusk"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    connections: int
    images: int
    image_size: str
    threads: int = 1
    delay_s: float = 0.0  # how long the fake upstream holds each answer
    image_b64: int | None = None  # override of the upstream's image size (base64 characters)
    once: bool = False  # one request per connection: capacity, not throughput

    def prompt(self, *, warm_up: bool = False) -> str:
        words = [PROMPT]
        if self.delay_s and not warm_up:
            words.append(f"delay={self.delay_s:g}")
        if self.image_b64 is not None:
            words.append(f"b64={self.image_b64}")
        return " ".join(words)

    def gateway_body(self, *, warm_up: bool = False) -> dict[str, object]:
        return {
            "model": "imagen4",
            "prompt": self.prompt(warm_up=warm_up),
            "n": self.images,
            "image_size": self.image_size,
        }

    def direct_body(self) -> dict[str, object]:
        """What the gateway sends upstream for `gateway_body` (see app.providers.imagen_wire)."""
        return {
            "instances": [{"prompt": self.prompt()}],
            "parameters": {
                "sampleCount": self.images,
                "aspectRatio": "1:1",
                "outputOptions": {"mimeType": "image/png"},
                "includeRaiReason": True,
                "sampleImageSize": self.image_size,
            },
        }


def scenarios(capacity_connections: int, capacity_delay_s: float, capacity_image_b64: int) -> dict[str, Scenario]:
    return {
        "s1": Scenario("s1", "one 1K image, 32 concurrent", connections=32, images=1, image_size="1K"),
        # Not in the issue: the per-request cost that does not grow with image size.
        "s1-small": Scenario(
            "s1-small", "one 16 KB image, 32 concurrent", connections=32, images=1, image_size="1K", image_b64=16_384
        ),
        "s1-serial": Scenario("s1-serial", "one 1K image, 1 at a time", connections=1, images=1, image_size="1K"),
        "s2": Scenario("s2", "four 2K images, 8 concurrent", connections=8, images=4, image_size="2K"),
        "s3": Scenario(
            "s3",
            f"{capacity_connections} held {capacity_delay_s:g} s",
            connections=capacity_connections,
            threads=2,
            images=1,
            image_size="1K",
            delay_s=capacity_delay_s,
            image_b64=capacity_image_b64,
            once=True,
        ),
    }


# Scenario 4 of the issue is every scenario again on PostgreSQL.
_EVERY = ("s1", "s1-small", "s1-serial", "s2", "s3")
BACKEND_SCENARIOS = {"sqlite": _EVERY, "postgres": _EVERY}


@dataclass
class Measurement:
    backend: str
    workers: int
    scenario: Scenario
    direct: LoadResult
    through: LoadResult
    usage: Usage
    upstream_cpu_s: float
    upstream_peak_in_flight: int
    other_load_cores: float  # CPU used by unrelated processes during the gateway run
    verdicts: list[tuple[str, bool]] = field(default_factory=list)

    def added_ms(self, percentile: str) -> float:
        value: float = getattr(self.through, percentile) - getattr(self.direct, percentile)
        return value

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.usage.cpu_s / self.through.requests if self.through.requests else float("nan")

    @property
    def throughput_ratio(self) -> float:
        return self.through.rps / self.direct.rps if self.direct.rps else float("nan")

    @property
    def response_mb(self) -> float:
        return self.through.bytes / self.through.requests / 1e6 if self.through.requests else 0.0


def judge(m: Measurement) -> list[tuple[str, bool]]:
    """The issue's targets that apply to this measurement, each with whether it was met."""
    name = m.scenario.name
    if not m.through.requests and name in ("s1", "s2", "s3"):
        return [(f"the gateway answered none of the requests ({m.through.error_count} errors)", False)]
    if name == "s1":
        return [
            (f"added p50 {m.added_ms('p50_ms'):.1f} ms ≤ 5 ms", m.added_ms("p50_ms") <= 5),
            (f"added p99 {m.added_ms('p99_ms'):.1f} ms ≤ 25 ms", m.added_ms("p99_ms") <= 25),
            (f"throughput {m.throughput_ratio:.0%} of direct ≥ 50 %", m.throughput_ratio >= 0.5),
            (f"no errors ({m.through.error_count})", m.through.error_count == 0),
        ]
    if name == "s2":
        in_flight_mb = m.scenario.connections * m.response_mb
        limit = 3 * in_flight_mb + 150
        return [
            (
                f"peak RSS {m.usage.peak_rss_mb:.0f} MB ≤ 3 × {in_flight_mb:.0f} + 150 = {limit:.0f} MB",
                m.usage.peak_rss_mb <= limit,
            ),
            (f"no errors ({m.through.error_count})", m.through.error_count == 0),
        ]
    if name == "s3":
        complete = m.through.requests == m.scenario.connections
        return [
            (
                f"{m.through.requests}/{m.scenario.connections} answered, {m.through.error_count} errors",
                complete and m.through.error_count == 0,
            ),
            (f"peak RSS {m.usage.peak_rss_mb:.0f} MB ≤ 600 MB", m.usage.peak_rss_mb <= 600),
        ]
    return []

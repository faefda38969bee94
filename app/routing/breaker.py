"""The per-channel circuit breaker as pure transitions on a small state record.

One state machine, two stores (`app.routing.health`): in memory for one process, Redis when
replicas share it. Times are wall-clock seconds so that replicas agree on them.

closed ──(threshold consecutive failures)──► open ──(cooldown over)──► half-open: one probe
  ▲                                            ▲                          │
  └──────────────(probe succeeds)──────────────┼──────(probe fails: longer cooldown)
A 429 does not count as a failure; it cools the channel for the upstream's Retry-After.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RECENT = 50  # outcomes kept for the success rate and latency shown to operators


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    base_cooldown_s: float = 5.0
    max_cooldown_s: float = 300.0
    default_rate_limit_cooldown_s: float = 5.0
    max_rate_limit_cooldown_s: float = 120.0
    probe_timeout_s: float = 60.0  # a probe that never reports back frees the slot after this

    def cooldown(self, level: int) -> float:
        return float(min(self.max_cooldown_s, self.base_cooldown_s * (2 ** max(level, 0))))


@dataclass
class BreakerState:
    consecutive_failures: int = 0
    level: int = 0  # how many times in a row the circuit opened; grows the cooldown
    open_until: float = 0.0
    cooling_until: float = 0.0  # after a 429
    probe_until: float = 0.0  # a half-open probe is in flight until then
    last_error: str | None = None
    last_error_at: float | None = None
    # Recent (ok 1/0, latency ms) outcomes, kept by the store apart from the breaker fields
    # because they change on every request and need no compare-and-set.
    recent: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["recent"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "recent"})

    def is_clean(self, now: float) -> bool:
        """Closed with no failures counted: a success changes nothing that needs writing."""
        return self.consecutive_failures == 0 and self.open_until == 0.0 and self.phase(now) == "closed"

    # -- what routing asks --------------------------------------------------------------

    def phase(self, now: float) -> str:
        if now < self.cooling_until:
            return "cooling"
        if self.open_until == 0.0:
            return "closed"
        if now < self.open_until:
            return "open"
        return "half_open"

    def available_at(self, now: float) -> float:
        """When this channel may next be tried (now, if it may be tried now)."""
        blocked_until = max(self.cooling_until, self.open_until)
        if self.phase(now) == "half_open" and now < self.probe_until:
            blocked_until = self.probe_until
        return max(now, blocked_until)

    # -- transitions ----------------------------------------------------------------------

    def claim_probe(self, now: float, policy: BreakerPolicy) -> bool:
        """Half-open lets exactly one request through at a time."""
        if self.phase(now) != "half_open" or now < self.probe_until:
            return False
        self.probe_until = now + policy.probe_timeout_s
        return True

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.level = 0
        self.open_until = 0.0
        self.probe_until = 0.0

    def failed(self, now: float, error: str, policy: BreakerPolicy) -> None:
        self.consecutive_failures += 1
        self.last_error, self.last_error_at = error, now
        was_probing = self.open_until != 0.0 and now >= self.open_until
        if was_probing or self.consecutive_failures >= policy.failure_threshold:
            self.open_until = now + policy.cooldown(self.level)
            self.level += 1
            self.probe_until = 0.0

    def rate_limited(self, now: float, retry_after_s: float | None, error: str, policy: BreakerPolicy) -> None:
        wait = policy.default_rate_limit_cooldown_s if retry_after_s is None else retry_after_s
        self.cooling_until = max(self.cooling_until, now + min(wait, policy.max_rate_limit_cooldown_s))
        self.last_error, self.last_error_at = error, now
        self.probe_until = 0.0

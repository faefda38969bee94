"""Which channels to try, in which order."""

from __future__ import annotations

import random
from itertools import groupby

from app.specs import ChannelSpec

Candidate = tuple[ChannelSpec, str]  # a channel and the upstream model it would call


def order_candidates(candidates: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Highest priority first; within one priority a weighted random order, so traffic spreads in
    proportion to `weight` and a failing channel's neighbours are tried next."""
    ordered: list[Candidate] = []
    by_priority = sorted(candidates, key=lambda c: -c[0].priority)
    for _priority, group in groupby(by_priority, key=lambda c: c[0].priority):
        members = list(group)
        # Efraimidis–Spirakis: sorting by u^(1/w) draws a weighted permutation in one pass.
        members.sort(key=lambda c: rng.random() ** (1.0 / max(c[0].weight, 1)), reverse=True)
        ordered.extend(members)
    return ordered

"""A test policy that interleaves edge bursts with drafted rounds (the tests of issue 31's edge streaming)."""

from __future__ import annotations

from gelato.decoding.policy import RoundContext
from gelato.policies.static import StaticPolicy

PATTERNS = ("burst-first", "draft-first", "alternate", "all-burst")


class BurstMixPolicy(StaticPolicy):
    """Static K drafts, with bursts of ``n`` tokens by ``pattern``: ``burst-first`` (the prompt's first round is
    a burst, then drafts), ``draft-first`` (a drafted round first, then bursts), ``alternate`` (bursts and
    drafted rounds in turn) or ``all-burst`` (one burst for the whole answer, as edge-streaming)."""

    def __init__(self, k: int = 2, pattern: str = "alternate", n: int = 2) -> None:
        super().__init__(k)
        if pattern not in PATTERNS:
            raise ValueError(f"pattern {pattern!r} is none of {PATTERNS}")
        self.pattern, self.n, self.turn = pattern, n, 0
        self.name = f"burst-mix-{pattern}"

    def stream(self, ctx: RoundContext) -> int:
        first = ctx.generated == 0
        if self.pattern == "all-burst":
            return ctx.max_stream
        if self.pattern == "burst-first":
            return self.n if first else 0
        if self.pattern == "draft-first":
            return 0 if first else self.n
        self.turn += 1
        return self.n if self.turn % 2 else 0

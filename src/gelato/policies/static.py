"""Static speculative decoding: a fixed draft length K every round (Leviathan et al., ICML 2023)."""

from __future__ import annotations

from gelato.policies.base import DraftPolicy, RoundContext


class StaticPolicy(DraftPolicy):
    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"number of draft tokens K must be >= 1, got {k}")
        self.k = k
        self.name = f"static-k{k}"

    def budget(self, ctx: RoundContext) -> int:
        return self.k

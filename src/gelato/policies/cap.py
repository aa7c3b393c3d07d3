"""A draft-length cap over any policy: the edge's largest round, a trace's longest rollout, the paper's g_max."""

from __future__ import annotations

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.types import Draft, DraftStep, RoundRecord, StopDecision


class BudgetCap(DraftPolicy):
    """Clips the wrapped policy's budget to ``cap``; everything else (the stop hook, drafting ahead, what it
    observes and reports) is the wrapped policy's. Only policies that can ask for more are affected:
    transformers' schedules (hf-confidence asks for 20, hf-heuristic grows by 2 after a fully accepted round)."""

    def __init__(self, policy: DraftPolicy, cap: int) -> None:
        if cap < 0:
            raise ValueError(f"a draft-length cap must be >= 0, got {cap}")
        self.policy = policy
        self.cap = cap
        self.name = policy.name

    def budget(self, ctx: RoundContext) -> int:
        return min(self.cap, self.policy.budget(ctx))

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        return self.policy.keep_drafting(step)

    def predraft(self, ctx: RoundContext, draft: Draft) -> int:
        return self.policy.predraft(ctx, draft)

    def observe(self, record: RoundRecord) -> None:
        self.policy.observe(record)

    def state(self) -> dict:
        return self.policy.state()

    def __getattr__(self, item: str):  # the wrapped policy's own settings (e.g. GELATO's queue) stay readable
        return getattr(self.__dict__["policy"], item)


def capped(policy: DraftPolicy, cap: int | None) -> DraftPolicy:
    """``policy`` under ``cap`` (None: as it is)."""
    return policy if cap is None else BudgetCap(policy, cap)

"""Fixed-length baselines: static SD with a run setting for its payload, DSSD, and edge-only decoding."""

from __future__ import annotations

from gelato.policies.base import RoundContext
from gelato.policies.common import PolicyBase
from gelato.policies.static import StaticPolicy


class StaticSDPolicy(StaticPolicy, PolicyBase):
    """Static speculative decoding: ``K`` draft tokens every round.

    The paper's static baselines (K in {5, 7, 9}) differ only in K; their top-p payload (p = 0.99995 or
    0.99998) is a clock/payload setting of the run, not of the policy, so ``payload_mode`` is None.
    Source: Leviathan et al., "Fast Inference from Transformers via Speculative Decoding", ICML 2023.
    """

    payload_mode = None

    def __init__(self, k: int) -> None:
        super().__init__(k)
        self.name = f"static-{k}"

    def state(self) -> dict:
        return {"policy": self.name, "budget": self.k}


class DSSDPolicy(StaticSDPolicy):
    """DSSD: distributed split speculative decoding with a static draft length (K = 7 in GELATO's comparison).

    The device sends token ids plus ``q(x_i)``; on a rejection the edge sends the target row ``p_j`` down
    and the device samples the residual. Those payload and downlink differences are the clock's
    ``"dssd"`` payload mode, which ``payload_mode`` asks the runner to select.
    Source: Ning et al., "DSSD: Efficient Edge-Device Deployment and Collaborative Inference via
    Distributed Split Speculative Decoding", 2025.
    """

    payload_mode = "dssd"

    def __init__(self, k: int = 7) -> None:
        super().__init__(k)
        self.name = "dssd" if k == 7 else f"dssd-{k}"


class EdgeAutoregressivePolicy(PolicyBase):
    """Edge-only autoregressive decoding: no draft (budget 0); the edge generates one token per round.

    The base interface asks for budgets >= 1, but the round loop clips budgets to >= 0 and a budget of 0
    gives an empty draft, which the verifier answers with the target's next token: exactly plain
    autoregressive decoding by the target. ``payload_mode = "edge_ar"`` tells the runner/clock to bill no
    draft compute and no draft payload (only the request and the returned token).
    Source: the no-speculation reference of every SD paper (e.g. Leviathan et al., ICML 2023).
    """

    name = "edge-autoregressive"
    payload_mode = "edge_ar"

    def budget(self, ctx: RoundContext) -> int:
        return 0

    def state(self) -> dict:
        return {"policy": self.name, "budget": 0}

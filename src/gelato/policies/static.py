"""Fixed-length baselines: static SD (``static-K``), DSSD and edge-only decoding (one token per round, or
streamed).

Each one's payload (the run's own top-p payload, DSSD's q(x) up / p down, edge-only's one token down) is
on its registry entry (``PolicySpec.payload_mode``), not on the policy.
"""

from __future__ import annotations

from gelato.decoding.policy import DraftPolicy, RoundContext


class StaticPolicy(DraftPolicy):
    """Static speculative decoding: ``K`` draft tokens every round, named ``static-K``.

    The paper's static baselines (K in {5, 7, 9}) differ only in K; their top-p payload (p = 0.99995 or
    0.99998) is a clock/payload setting of the run, not of the policy.
    Source: Leviathan et al., "Fast Inference from Transformers via Speculative Decoding", ICML 2023.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"number of draft tokens K must be >= 1, got {k}")
        self.k = k
        self.name = f"static-{k}"

    def budget(self, ctx: RoundContext) -> int:
        return self.k

    def state(self) -> dict:
        return {"policy": self.name, "budget": self.k}


class DSSDPolicy(StaticPolicy):
    """DSSD: distributed split speculative decoding with a static draft length (K = 7 in GELATO's comparison).

    The device sends token ids plus ``q(x_i)``; on a rejection the edge sends the target row ``p_j`` down
    and the device samples the residual. Those payload and downlink differences are the clock's
    ``dssd`` payload mode, which the policy's registry entry selects.
    Source: Ning et al., "DSSD: Efficient Edge-Device Deployment and Collaborative Inference via
    Distributed Split Speculative Decoding", 2025.
    """

    def __init__(self, k: int = 7) -> None:
        super().__init__(k)
        self.name = "dssd" if k == 7 else f"dssd-{k}"


class EdgeAutoregressivePolicy(DraftPolicy):
    """Edge-only autoregressive decoding: no draft (budget 0); the edge generates one token per round.

    The round loop clips budgets to >= 0 and a budget of 0 gives an empty draft, which the verifier answers
    with the target's next token: exactly plain autoregressive decoding by the target. Its registry entry's
    ``edge_ar`` payload tells the clock to bill no draft compute and no draft payload (only the request and
    the returned token).
    Source: the no-speculation reference of every SD paper (e.g. Leviathan et al., ICML 2023).
    """

    name = "edge-autoregressive"

    def budget(self, ctx: RoundContext) -> int:
        return 0

    def state(self) -> dict:
        return {"policy": self.name, "budget": 0}


class EdgeStreamingPolicy(DraftPolicy):
    """The edge streams its own answer: no draft, one burst for the rest of the answer (C = every token left).

    What a user without speculative decoding runs: the device sends the prompt, the edge's LLM server decodes
    alone at its own speed and streams each token down, so the link's delay is paid once, not per token. A
    verifier that cannot stream (``ctx.max_stream`` 0) gets edge-autoregressive rounds instead.
    """

    name = "edge-streaming"

    def stream(self, ctx: RoundContext) -> int:
        return ctx.max_stream

    def budget(self, ctx: RoundContext) -> int:
        return 0

    def state(self) -> dict:
        return {"policy": self.name, "budget": 0}

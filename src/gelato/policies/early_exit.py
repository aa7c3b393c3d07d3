"""Per-token early-exit rules from the SD literature, each on a fixed maximum draft length ``k``.

All three stop drafting on the draft distribution of the token just produced; the round loop sends
position 0 whatever the rule says (at least one token per round). ``k`` defaults to GELATO's ``g_max``
(15) so that the stop rule, not the cap, decides the length.
"""

from __future__ import annotations

import math

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.types import DraftStep, StopDecision


class _EarlyExitPolicy(DraftPolicy):
    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"maximum draft length k must be >= 1, got {k}")
        self.k = k
        self._stop: int | None = None  # position where this round's rule fired (None: ran to the budget)

    def budget(self, ctx: RoundContext) -> int:
        self._stop = None
        return self.k

    def _stopped(self, step: DraftStep, decision: StopDecision) -> StopDecision:
        self._stop = step.position
        return decision

    def state(self) -> dict:
        return {"policy": self.name, "budget": self.k, "stop_position": self._stop}


class PMinPolicy(_EarlyExitPolicy):
    """llama.cpp's draft confidence gate ``--draft-p-min``: stop when the draft's top-1 probability is below
    ``p_min`` (default 0.75).

    Semantics, read in ggml-org/llama.cpp ``common/speculative.cpp`` (draft-simple ``draft()``): the check
    ``if (cur_p->data[0].p < params.p_min)`` runs *before* the token is appended to the draft, so the
    low-confidence token is not proposed (``STOP_BEFORE``; ``send_low_confidence=False``, the default).
    The first implementation (``common_speculative_gen_draft``, late 2024) appended the token first and
    then broke out of the loop, i.e. kept it: ``send_low_confidence=True`` gives that older behaviour.
    llama.cpp's probability is over its draft sampler's top-k candidates; ours is ``max_x q(x)`` of the
    processed draft distribution. llama.cpp's ``n_min`` (discard drafts shorter than it) is not modelled.
    Source: llama.cpp, common/speculative.cpp and the ``--draft-p-min`` option.
    """

    name = "pmin"

    def __init__(self, p_min: float = 0.75, k: int = 15, send_low_confidence: bool = False) -> None:
        super().__init__(k)
        if not 0.0 <= p_min <= 1.0:
            raise ValueError(f"p_min must be in [0, 1], got {p_min}")
        self.p_min = p_min
        self.send_low_confidence = send_low_confidence

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        if step.max_prob < self.p_min:
            return self._stopped(step, StopDecision.STOP_AFTER if self.send_low_confidence
                                 else StopDecision.STOP_BEFORE)
        return StopDecision.CONTINUE


class SVIPPolicy(_EarlyExitPolicy):
    """SVIP: stop when the entropy-based bound says the token is likely rejected, ``sqrt(gamma * H) > h``
    (``gamma = 0.15``, ``h = 0.3``: stop at ``H > h^2 / gamma = 0.6`` nats); the token is not sent.

    Source: Zhang et al., "Draft Model Knows When to Stop: A Self-Verification Length Policy for
    Speculative Decoding" (SVIP), 2024; constants in docs/design-decisions.md, "Baselines' rules and constants".
    """

    name = "svip"

    def __init__(self, gamma: float = 0.15, h: float = 0.3, k: int = 15) -> None:
        super().__init__(k)
        if gamma <= 0 or h < 0:
            raise ValueError(f"SVIP needs gamma > 0 and h >= 0, got gamma={gamma}, h={h}")
        self.gamma, self.h = gamma, h

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        if math.sqrt(self.gamma * max(0.0, step.entropy)) > self.h:
            return self._stopped(step, StopDecision.STOP_BEFORE)
        return StopDecision.CONTINUE


class AdaEDLPolicy(_EarlyExitPolicy):
    """AdaEDL: stop when the entropy-based lower bound on the acceptance probability,
    ``1 - sqrt(gamma * H)``, falls below ``lambda`` (``gamma = 0.2``, ``lambda = 0.7``: stop at
    ``H > (1 - lambda)^2 / gamma = 0.45`` nats); the token is not sent.

    Choices: ``lambda`` is a fixed parameter here (the paper also discusses adapting it online; that
    adaptation is not reproduced); the bound is computed on the processed draft distribution ``q``.
    Source: Agrawal et al., "AdaEDL: Early Draft Stopping for Speculative Decoding of Large Language Models
    via an Entropy-based Lower Bound on Token Acceptance Probability", 2024.
    """

    name = "adaedl"

    def __init__(self, gamma: float = 0.2, lam: float = 0.7, k: int = 15) -> None:
        super().__init__(k)
        if gamma <= 0:
            raise ValueError(f"AdaEDL needs gamma > 0, got {gamma}")
        self.gamma, self.lam = gamma, lam

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        if 1.0 - math.sqrt(self.gamma * max(0.0, step.entropy)) < self.lam:
            return self._stopped(step, StopDecision.STOP_BEFORE)
        return StopDecision.CONTINUE

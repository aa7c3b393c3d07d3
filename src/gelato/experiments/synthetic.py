"""A synthetic draft/verify source calibrated to the GELATO paper's regime (docs/design-decisions.md: "The inner loop", "Paper-mode constants").

Per drafted token an entropy H is drawn (lognormal, sigma 0.25, scaled so that the mean acceptance
E[phi(H)] equals rho0 = 0.9 under phi(H) = exp(-c H), c = 0.35), and the verifier accepts it with
probability phi(H), in the manner of llama.cpp's synthetic acceptance rates. The top-p support of q
(what the paper-compat payload packs) is lognormal with mean 5000 entries at p = 0.99995 (2.5x larger at
p = 0.99998), correlated 0.4 with log-entropy, capped at the Qwen2.5 vocabulary. Token ids are drawn
uniformly from that vocabulary (they only size varints).

Pipelined drafting: the token the device drafts right after its sent ones (``lookahead``) is matched by
the target's own next token with probability phi(H) of that token, as any other draft position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gelato.constants import RHO0, C
from gelato.decoding.proposer import DraftedToken, Proposer
from gelato.decoding.types import Draft, Verdict

QWEN_VOCAB = 151_936


@dataclass(frozen=True)
class SyntheticRegime:
    c: float = C  # phi(H) = exp(-c H)
    rho0: float = RHO0  # mean acceptance
    entropy_sigma: float = 0.25
    support_mean: float = 5000.0  # at top_p = 0.99995
    support_sigma: float = 1.5
    support_entropy_corr: float = 0.4
    support_scale_99998: float = 2.5
    vocab_size: int = QWEN_VOCAB

    def entropy_mu(self) -> float:
        """mu of log H such that E[exp(-c exp(mu + sigma Z))] = rho0 (Gauss-Hermite quadrature + bisection)."""
        nodes, weights = np.polynomial.hermite_e.hermegauss(64)
        weights = weights / weights.sum()

        def mean_acceptance(mu: float) -> float:
            return float(np.sum(weights * np.exp(-self.c * np.exp(mu + self.entropy_sigma * nodes))))

        lo, hi = -20.0, 5.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mean_acceptance(mid) > self.rho0 else (lo, mid)
        return (lo + hi) / 2

    def phi(self, entropy: float) -> float:
        return math.exp(-self.c * entropy)


class SyntheticSource:
    """Draws tokens for both sides from one seeded generator: a proposer and a verifier over it."""

    def __init__(self, regime: SyntheticRegime = SyntheticRegime(), seed: int = 0, top_p: float = 0.99995):
        self.regime = regime
        self.rng = np.random.default_rng(seed)
        self.mu = regime.entropy_mu()
        self.top_p = top_p
        self.scale = 1.0 if top_p == 0.99995 else regime.support_scale_99998 if top_p == 0.99998 else None
        if self.scale is None:
            raise ValueError(f"the synthetic regime defines supports at top_p 0.99995 and 0.99998, not {top_p}")
        self.log_support_mu = math.log(regime.support_mean) - regime.support_sigma ** 2 / 2
        # pipelined drafting: the first token drafted ahead of the round being verified (None: none)
        self.lookahead: DraftedToken | None = None

    def draw_token(self) -> DraftedToken:
        r = self.regime
        z = self.rng.standard_normal()
        entropy = math.exp(self.mu + r.entropy_sigma * z)
        z_s = r.support_entropy_corr * z + math.sqrt(1 - r.support_entropy_corr ** 2) * self.rng.standard_normal()
        support = math.exp(self.log_support_mu + r.support_sigma * z_s) * self.scale
        support = int(min(max(1, round(support)), r.vocab_size))
        # No real q here: use exp(-H) as the top-1 probability (exact for a point mass, a rough proxy otherwise).
        top1 = math.exp(-entropy)
        return DraftedToken(int(self.rng.integers(r.vocab_size)), entropy, top1, top1, topp_support=support)


class SyntheticProposer(Proposer):
    def __init__(self, source: SyntheticSource):
        self.source = source

    def draft_next(self, committed: Sequence[int], sent: Sequence[int]) -> DraftedToken:
        return self.source.draw_token()

    def predraft(self, committed: Sequence[int], sent: Sequence[int], depth: int,
                 stop: Callable[[], bool] | None = None) -> list[DraftedToken]:
        """Draft ahead; the first token is the one the verifier's own token is compared with."""
        tokens = [self.source.draw_token() for _ in range(depth)]
        self.source.lookahead = tokens[0] if tokens else None
        return tokens


class SyntheticVerifier:
    """Accepts each sent token with probability phi(H) until the first rejection."""

    def __init__(self, source: SyntheticSource):
        self.source = source

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        src = self.source
        accepted = 0
        for h in draft.entropies[: len(draft.tokens)]:
            if src.rng.random() >= src.regime.phi(h):
                break
            accepted += 1
        ahead, src.lookahead = src.lookahead, None
        if ahead is not None and accepted == len(draft.tokens):
            # the target's own next token agrees with the draft's next token with probability phi(H)
            if src.rng.random() < src.regime.phi(ahead.entropy):
                return Verdict(accepted=accepted, token=ahead.token)
            other = int(src.rng.integers(src.regime.vocab_size - 1))
            return Verdict(accepted=accepted, token=other + (other >= ahead.token))
        return Verdict(accepted=accepted, token=int(src.rng.integers(src.regime.vocab_size)))

"""A model-free closed loop for policies: synthetic entropies and acceptances, a linear time/energy model.

Each round: the policy chooses a budget for this round's link, sees one synthetic draft token at a time
(entropy lognormal around ``h_scale``; acceptance probability ``exp(-c H)``, the paper's map), and then
observes a record charged by the same linear model it may use as its predictor.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.policies.predictor import LinearRoundPredictor
from gelato.decoding.types import DraftStep, RoundRecord, StopDecision


@dataclass(frozen=True)
class Link:
    uplink_bps: float
    gain: float


@dataclass
class LoopResult:
    rounds: int
    tokens: int
    time: float
    energy: float
    budgets: list[int]
    energies: list[float]

    @property
    def mean_energy(self) -> float:
        return self.energy / self.rounds

    @property
    def throughput(self) -> float:
        return self.tokens / self.time


def run_loop(policy: DraftPolicy, model: LinearRoundPredictor, rounds: int = 1000, seed: int = 0,
             h_scale: float = 0.3, h_sigma: float = 0.5, c: float = 0.35, bits_per_token: float = 20_000.0,
             mean_rate: float = 10e6, prompt: int = 100) -> LoopResult:
    rng = random.Random(seed)
    context, tokens, t_total, e_total = prompt, 0, 0.0, 0.0
    budgets, energies = [], []
    for k in range(rounds):
        fading = max(rng.expovariate(1.0), 1e-3)
        link = Link(uplink_bps=mean_rate * math.log2(1 + 1000 * fading) / math.log2(1001), gain=fading)
        ctx = RoundContext(index=k, generated=tokens, context_len=context, max_budget=10**6, link=link)
        budget = max(0, policy.budget(ctx))
        entropies, sent = [], []
        for pos in range(budget):
            h = h_scale * math.exp(h_sigma * rng.gauss(0.0, 1.0))
            entropies.append(h)
            decision = policy.keep_drafting(DraftStep(pos, 0, h, math.exp(-h), math.exp(-h)))
            if decision is StopDecision.STOP_BEFORE and pos > 0:
                break
            sent.append(h)
            if decision is not StopDecision.CONTINUE:
                break
        accepted = 0
        for h in sent:
            if rng.random() >= math.exp(-c * h):
                break
            accepted += 1
        bits = bits_per_token * len(sent)
        t_up = bits / link.uplink_bps
        t = model.t_fixed + len(entropies) * model.t_token + t_up
        e = len(entropies) * model.e_token + model.p_up * t_up
        record = RoundRecord(index=k, start=context, budget=budget, drafted=len(entropies), sent=len(sent),
                             accepted=accepted, token=0, entropies=entropies,
                             charge={"t_round": t, "e_round": e, "bits_up": bits, "bits_down": 16.0,
                                     "rate_up_bps": link.uplink_bps, "gain": link.gain})
        policy.observe(record)
        context += accepted + 1
        tokens += accepted + 1
        t_total += t
        e_total += e
        budgets.append(budget)
        energies.append(e)
    return LoopResult(rounds, tokens, t_total, e_total, budgets, energies)

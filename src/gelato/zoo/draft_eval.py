"""How good a draft is for its target, on held-out chat-formatted GSM8K test questions (greedy).

One greedy trace (the target's continuation and the draft's K_max-token rollout at every position)
gives, exactly and with no further model calls: the mean acceptance length of static draft length K
(tokens per round, the bonus token included), per-token top-1 agreement against draft entropy and its
exponential fit, and the draft's mean entropy. The cost ratio c is one draft step over one target step,
timed side by side in one process.
"""

from __future__ import annotations

import numpy as np

from gelato.experiments.bench_engine import forward_seconds
from gelato.experiments.trace import Trace
from gelato.zoo.evaluate import entropy_table


def static_acceptance_length(trace: Trace, k: int) -> float:
    """Mean tokens per round of static-K greedy speculative decoding, replayed from ``trace``."""
    tokens = rounds = 0
    for p in trace.prompts:
        n, s = p.length, 0
        while s < n:
            acc = 0
            while acc < k and s + acc < n - 1 and p.draft_tokens[s, acc] == p.target_tokens[s + acc]:
                acc += 1
            s += acc + 1
            tokens += acc + 1
            rounds += 1
    return tokens / max(rounds, 1)


def first_token_observations(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """(draft entropy, agreement) of the first drafted token at every position."""
    h = np.concatenate([p.entropies[:, 0] for p in trace.prompts])
    a = np.concatenate([(p.draft_tokens[:, 0] == p.target_tokens).astype(np.float64) for p in trace.prompts])
    return h, a


def evaluate_trace(trace: Trace, ks=(2, 4, 8)) -> dict:
    h, a = first_token_observations(trace)
    table = entropy_table(h, a)
    return {"mean_acceptance_length": {str(k): round(static_acceptance_length(trace, k), 3) for k in ks},
            "top1_agreement": round(float(a.mean()), 4), "mean_draft_entropy": round(float(h.mean()), 3),
            "entropy_fit": {k: v for k, v in table.items() if k != "bins"}, "positions": int(len(h))}


def cost_ratio(draft, target, context: list[int], steps: int = 16) -> dict:
    """c = one draft decode step / one target decode step after ``context``, timed side by side."""
    t = forward_seconds(target, context, steps)
    d = forward_seconds(draft, context, steps)
    return {"draft_step_ms": round(d * 1e3, 2), "target_step_ms": round(t * 1e3, 2), "c": round(d / t, 4)}

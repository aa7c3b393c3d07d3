"""Engine benchmark: target-only decoding vs our speculative decoding vs transformers' assisted generation.

All three run greedy on the same prompts in one process, one after another, so ratios are measured side
by side. The analytic bound is Leviathan et al.'s speedup (1 - a^(K+1)) / ((1 - a)(1 + K c)), with a the
per-token acceptance fitted to the measured tokens per round and c the draft/target forward-time ratio.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from gelato.decoding.sampling import SamplingParams
from gelato.generation import generate_speculative, generate_target_only
from gelato.models.cached import CachedCausalLM
from gelato.policies.common import expected_tokens_const
from gelato.policies.static import StaticPolicy

GREEDY = SamplingParams()


@dataclass
class EngineBenchResult:
    k: int
    prompts: int
    max_new_tokens: int
    target_only_tps: float
    ours_tps: float
    hf_assisted_tps: float
    ours_vs_target: float
    ours_vs_hf: float
    hf_vs_target: float
    mean_acceptance_length: float
    draft_acceptance_rate: float
    fitted_acceptance: float  # a such that (1 - a^(K+1)) / (1 - a) equals the measured tokens per round
    cost_ratio: float  # c = draft forward time / target forward time (one token, cached context)
    analytic_speedup: float
    fraction_of_bound: float
    outputs_identical: bool  # ours == target-only == HF assisted, token for token
    time_split: dict  # ours: seconds in draft / verify / other
    verify_cost_ratio: float  # target forward over K+1 tokens / over 1 token (the bound assumes 1.0)
    refined_bound: float  # the bound with the measured verify cost: EN / (verify_cost_ratio + K c)


def fit_acceptance(tokens_per_round: float, k: int) -> float:
    """Invert :func:`~gelato.policies.common.expected_tokens_const` by bisection (it is increasing in a)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens_const(mid, k) < tokens_per_round else (lo, mid)
    return (lo + hi) / 2


def analytic_speedup(a: float, k: int, c: float) -> float:
    return expected_tokens_const(a, k) / (1 + k * c)


@torch.inference_mode()
def forward_seconds(model: torch.nn.Module, context: Sequence[int], steps: int = 24) -> float:
    """Mean time of a one-token cached forward after ``context``."""
    cached = CachedCausalLM(model)
    cached.feed(list(context))
    ids = list(context)
    start = time.perf_counter()
    for i in range(steps):
        ids.append(int(ids[-1 - i % len(context)]))
        cached.feed(ids)
    return (time.perf_counter() - start) / steps


@torch.inference_mode()
def multi_token_forward_seconds(model: torch.nn.Module, context: Sequence[int], n_tokens: int, steps: int = 16) -> float:
    """Mean time of a cached forward over ``n_tokens`` new tokens after ``context`` (a verification pass)."""
    cached = CachedCausalLM(model)
    cached.feed(list(context))
    extra = [int(t) for t in list(context)[-n_tokens:]]
    start = time.perf_counter()
    for _ in range(steps):
        cached.feed(list(context) + extra, logits_from=len(context) - 1)
        cached.truncate(len(context))
    return (time.perf_counter() - start) / steps


@torch.inference_mode()
def hf_assisted(draft, target, prompt_ids, k: int, max_new_tokens: int, eos_token_id, pad_token_id) -> list[int]:
    cfg = draft.generation_config
    cfg.num_assistant_tokens = k
    cfg.num_assistant_tokens_schedule = "constant"
    cfg.assistant_confidence_threshold = 0.0  # off
    ids = torch.tensor([list(prompt_ids)])
    out = target.generate(ids, attention_mask=torch.ones_like(ids), assistant_model=draft, do_sample=False,
                          max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def run_engine_bench(draft, target, prompts: Sequence[Sequence[int]], k: int = 4, max_new_tokens: int = 64,
                     eos_token_id: int | None = None, pad_token_id: int | None = None, vocab_size: int | None = None,
                     progress=None) -> EngineBenchResult:
    def tick():
        if progress is not None:
            progress()

    # Warm-up (first calls allocate and pick kernels).
    generate_target_only(target, prompts[0], GREEDY, 8, eos_token_id, vocab_size=vocab_size)
    generate_speculative(draft, target, prompts[0], GREEDY, StaticPolicy(k), 8, eos_token_id, vocab_size=vocab_size)
    hf_assisted(draft, target, prompts[0], k, 8, eos_token_id, pad_token_id)

    totals = {"target": [0, 0.0], "ours": [0, 0.0], "hf": [0, 0.0]}
    rounds = sent = accepted = generated = 0
    split = {"draft": 0.0, "verify": 0.0, "other": 0.0}
    identical = True
    for prompt in prompts:
        t0 = time.perf_counter()
        ref = generate_target_only(target, prompt, GREEDY, max_new_tokens, eos_token_id, vocab_size=vocab_size)
        t1 = time.perf_counter()
        ours = generate_speculative(draft, target, prompt, GREEDY, StaticPolicy(k), max_new_tokens, eos_token_id,
                                    vocab_size=vocab_size)
        t2 = time.perf_counter()
        theirs = hf_assisted(draft, target, prompt, k, max_new_tokens, eos_token_id, pad_token_id)
        t3 = time.perf_counter()
        for key, n, dt in (("target", len(ref.token_ids), t1 - t0), ("ours", len(ours.token_ids), t2 - t1),
                           ("hf", len(theirs), t3 - t2)):
            totals[key][0] += n
            totals[key][1] += dt
        identical &= ours.token_ids == ref.token_ids == theirs
        m = ours.metrics
        rounds, sent, accepted, generated = rounds + m.rounds, sent + m.sent, accepted + m.accepted, generated + m.generated_tokens
        split["draft"] += m.draft_seconds
        split["verify"] += m.verify_seconds
        split["other"] += m.other_seconds
        tick()
    tps = {key: n / dt for key, (n, dt) in totals.items()}
    context = list(prompts[0]) + list(range(1, 33))
    target_one = forward_seconds(target, context)
    c = forward_seconds(draft, context) / target_one
    verify_ratio = multi_token_forward_seconds(target, context, k + 1) / target_one
    mal = generated / rounds
    a = fit_acceptance(mal, k)
    bound = analytic_speedup(a, k, c)
    speedup = tps["ours"] / tps["target"]
    return EngineBenchResult(k=k, prompts=len(prompts), max_new_tokens=max_new_tokens,
                             target_only_tps=tps["target"], ours_tps=tps["ours"], hf_assisted_tps=tps["hf"],
                             ours_vs_target=speedup, ours_vs_hf=tps["ours"] / tps["hf"],
                             hf_vs_target=tps["hf"] / tps["target"], mean_acceptance_length=mal,
                             draft_acceptance_rate=accepted / sent if sent else 0.0, fitted_acceptance=a,
                             cost_ratio=c, analytic_speedup=bound, fraction_of_bound=speedup / bound,
                             outputs_identical=identical, time_split=split, verify_cost_ratio=verify_ratio,
                             refined_bound=expected_tokens_const(a, k) / (verify_ratio + k * c))


def as_dict(result: EngineBenchResult) -> dict:
    return asdict(result)

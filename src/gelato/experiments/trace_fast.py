"""Record a greedy trace with fewer draft steps: a rollout that the target confirms is shifted, not redone.

At greedy decoding the draft's rollout after ``prompt + target[:s+1]`` equals the rollout after
``prompt + target[:s]`` shifted by one whenever its first token is ``target[s]`` (the contexts are the
same token sequence), so only the one new last token needs a draft step. Where the draft agrees with
the target this costs one draft step per position instead of ``k_max``; the recorded
:class:`~gelato.experiments.trace.PromptTrace` has the same tokens as
:func:`~gelato.experiments.trace.record_prompt`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from gelato.decoding.sampling import SamplingParams
from gelato.experiments.trace import DEFAULT_TOP_PS, PromptTrace, Trace, greedy_draft_step, record_trace
from gelato.generation.loop import target_only_generate
from gelato.models.cached import CachedCausalLM


@torch.inference_mode()
def record_prompt_fast(draft: CachedCausalLM, target: CachedCausalLM, prompt_ids: Sequence[int], k_max: int,
                       max_new_tokens: int, eos_token_id: int | None = None,
                       top_ps: Sequence[float] = DEFAULT_TOP_PS, prompt_id: str = "") -> PromptTrace:
    target.reset()
    draft.reset()
    continuation = target_only_generate(target, prompt_ids, SamplingParams(), max_new_tokens, eos_token_id).token_ids
    n = len(continuation)
    rows: list[list[tuple]] = []  # per position s: k_max (token, entropy, prob, supports)
    prev: list[tuple] | None = None
    for s in range(n):
        base = list(prompt_ids) + continuation[:s]
        if prev is not None and prev[0][0] == continuation[s - 1]:
            rollout = prev[1:]  # the confirmed first token is now context; the rest carries over
        else:
            rollout = []
        while len(rollout) < k_max:
            rollout.append(greedy_draft_step(draft, base + [r[0] for r in rollout], top_ps))
        rows.append(rollout)
        prev = rollout
    shape = (n, k_max)
    tokens = np.array([[r[0] for r in row] for row in rows], dtype=np.int32).reshape(shape)
    ent = np.array([[r[1] for r in row] for row in rows], dtype=np.float32).reshape(shape)
    prob = np.array([[r[2] for r in row] for row in rows], dtype=np.float32).reshape(shape)
    support = np.array([[r[3] for r in row] for row in rows], dtype=np.int32).reshape(n, k_max, len(top_ps))
    return PromptTrace(list(prompt_ids), np.asarray(continuation, dtype=np.int32), tokens, ent, prob, prob.copy(),
                       support.transpose(2, 0, 1).copy(), prompt_id)


def record_trace_fast(draft_model, target_model, prompts: Sequence[tuple[str, Sequence[int]]], k_max: int = 15,
                      max_new_tokens: int = 256, eos_token_id: int | None = None, header: dict | None = None,
                      top_ps: Sequence[float] = DEFAULT_TOP_PS, vocab_size: int | None = None,
                      progress: Callable[[], None] | None = None) -> Trace:
    """Same contract and result as :func:`gelato.experiments.trace.record_trace`, recorded faster."""
    return record_trace(draft_model, target_model, prompts, k_max, max_new_tokens, eos_token_id, header, top_ps,
                        vocab_size, progress, record=record_prompt_fast)

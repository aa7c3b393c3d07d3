"""Greedy traces: record once, replay any stopping rule and budget exactly, with no model calls.

At temperature 0 a round that starts at generated position s depends only on (a) the draft's own greedy
rollout of up to K_max tokens after ``prompt + target[:s]`` (tokens, entropies, probabilities) and
(b) the target's greedy tokens after s. A :class:`PromptTrace` stores both for every s, so
:class:`TraceProposer` and :class:`TraceVerifier` reproduce the live engine's rounds exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gelato.decoding.proposer import DraftedToken, KeepDrafting, Proposer, always_continue, draft_loop, draft_token
from gelato.decoding.rejection import greedy_accepted
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Burst, Draft, Verdict
from gelato.generation.loop import target_only_generate
from gelato.models.cached import CachedCausalLM

TRACE_FORMAT = "gelato-trace-v1"
DEFAULT_TOP_PS = (0.99995, 0.99998)


@dataclass
class PromptTrace:
    prompt_ids: list[int]
    target_tokens: np.ndarray  # (N,) the target's greedy continuation (ends at EOS if it came)
    draft_tokens: np.ndarray  # (N, K_max) draft greedy rollout after prompt + target[:s]
    entropies: np.ndarray  # (N, K_max) nats
    token_probs: np.ndarray  # (N, K_max) q(token)
    max_probs: np.ndarray  # (N, K_max) top-1 probability of q
    topp_support: np.ndarray  # (len(top_ps), N, K_max) support size of q's top-p set per threshold
    prompt_id: str = ""

    @property
    def length(self) -> int:
        return int(self.target_tokens.shape[0])


@dataclass
class Trace:
    header: dict
    prompts: list[PromptTrace] = field(default_factory=list)

    @property
    def k_max(self) -> int:
        return int(self.header["k_max"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for i, p in enumerate(self.prompts):
            arrays[f"p{i}_prompt"] = np.asarray(p.prompt_ids, dtype=np.int32)
            arrays[f"p{i}_target"] = p.target_tokens.astype(np.int32)
            arrays[f"p{i}_draft"] = p.draft_tokens.astype(np.int32)
            arrays[f"p{i}_entropy"] = p.entropies.astype(np.float32)
            arrays[f"p{i}_tokprob"] = p.token_probs.astype(np.float32)
            arrays[f"p{i}_maxprob"] = p.max_probs.astype(np.float32)
            arrays[f"p{i}_support"] = p.topp_support.astype(np.int32)
        header = {**self.header, "format": TRACE_FORMAT, "n_prompts": len(self.prompts),
                  "prompt_ids": [p.prompt_id for p in self.prompts]}
        np.savez_compressed(path, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        return path

    @staticmethod
    def load(path: str | Path) -> "Trace":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"trace file not found: {path} (record one with `gelato trace record`)")
        with np.load(path) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header.get("format") != TRACE_FORMAT:
                raise ValueError(f"{path} is not a {TRACE_FORMAT} file (format {header.get('format')!r})")
            prompts = [PromptTrace(prompt_ids=data[f"p{i}_prompt"].tolist(), target_tokens=data[f"p{i}_target"],
                                   draft_tokens=data[f"p{i}_draft"], entropies=data[f"p{i}_entropy"],
                                   token_probs=data[f"p{i}_tokprob"], max_probs=data[f"p{i}_maxprob"],
                                   topp_support=data[f"p{i}_support"], prompt_id=header["prompt_ids"][i])
                       for i in range(header["n_prompts"])]
        return Trace(header, prompts)


def topp_support_size(q: torch.Tensor, top_p: float) -> int:
    """Size of the smallest set of most likely tokens whose mass reaches ``top_p``."""
    sorted_q = torch.sort(q, descending=True).values
    mass_before = torch.cumsum(sorted_q, 0) - sorted_q
    return max(1, int((mass_before < top_p).sum()))


def greedy_draft_step(draft: CachedCausalLM, ids: Sequence[int], top_ps: Sequence[float]
                      ) -> tuple[int, float, float, list[int]]:
    """The draft's greedy token after ``ids``, drafted as the live proposer drafts it (:func:`draft_token`), with
    what a trace records of it: (token, entropy, q(token), top-p support size per threshold of ``top_ps``)."""
    token, q, entropy = draft_token(draft.feed(list(ids))[-1], SamplingParams(), None)
    return token, entropy, float(q[token]), [topp_support_size(q, p) for p in top_ps]


@torch.inference_mode()
def record_prompt(draft: CachedCausalLM, target: CachedCausalLM, prompt_ids: Sequence[int], k_max: int,
                  max_new_tokens: int, eos_token_id: int | None = None, top_ps: Sequence[float] = DEFAULT_TOP_PS,
                  prompt_id: str = "") -> PromptTrace:
    greedy = SamplingParams()
    target.reset()
    draft.reset()
    continuation = target_only_generate(target, prompt_ids, greedy, max_new_tokens, eos_token_id).token_ids
    n = len(continuation)
    tokens = np.zeros((n, k_max), dtype=np.int32)
    ent = np.zeros((n, k_max), dtype=np.float32)
    tok_p = np.zeros((n, k_max), dtype=np.float32)
    max_p = np.zeros((n, k_max), dtype=np.float32)
    support = np.zeros((len(top_ps), n, k_max), dtype=np.int32)
    for s in range(n):
        ids = list(prompt_ids) + continuation[:s]
        rollout: list[int] = []
        for j in range(k_max):
            token, entropy, prob, supports = greedy_draft_step(draft, ids + rollout, top_ps)
            tokens[s, j], ent[s, j], tok_p[s, j], max_p[s, j] = token, entropy, prob, prob  # greedy: q(token) is max
            support[:, s, j] = supports
            rollout.append(token)
    return PromptTrace(list(prompt_ids), np.asarray(continuation, dtype=np.int32), tokens, ent, tok_p, max_p,
                       support, prompt_id)


def record_trace(draft_model, target_model, prompts: Sequence[tuple[str, Sequence[int]]], k_max: int = 15,
                 max_new_tokens: int = 256, eos_token_id: int | None = None, header: dict | None = None,
                 top_ps: Sequence[float] = DEFAULT_TOP_PS, vocab_size: int | None = None,
                 progress: Callable[[], None] | None = None, record: Callable[..., PromptTrace] | None = None) -> Trace:
    """Record a greedy trace for each ``(prompt_id, prompt_ids)`` (``record``: the per-prompt recorder, with
    :func:`record_prompt`'s signature; default :func:`record_prompt`)."""
    record = record or record_prompt
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    draft, target = CachedCausalLM(draft_model, vocab_size), CachedCausalLM(target_model, vocab_size)
    trace = Trace({**(header or {}), "k_max": k_max, "max_new_tokens": max_new_tokens, "top_ps": list(top_ps),
                   "eos_token_id": eos_token_id, "temperature": 0.0})
    for pid, ids in prompts:
        trace.prompts.append(record(draft, target, ids, k_max, max_new_tokens, eos_token_id, top_ps, pid))
        if progress is not None:
            progress()
    return trace


class TraceProposer(Proposer):
    """Replays the recorded draft rollouts; ``top_p`` picks which support sizes drafts carry."""

    def __init__(self, prompt: PromptTrace, top_p: float | None = None, top_ps: Sequence[float] = DEFAULT_TOP_PS):
        self.prompt = prompt
        self.prompt_len = len(prompt.prompt_ids)
        self.support_row = None if top_p is None else list(top_ps).index(top_p)

    def propose(self, committed: Sequence[int], budget: int, keep_drafting: KeepDrafting = always_continue) -> Draft:
        s = len(committed) - self.prompt_len
        p = self.prompt
        k_max = p.draft_tokens.shape[1]
        if budget > k_max:
            raise ValueError(f"budget {budget} exceeds the trace's k_max {k_max}")

        return draft_loop(lambda j, sent: self._token(s, j), budget, keep_drafting, start=len(committed))

    @property
    def reach(self) -> int:
        """Longest rollout recorded: no round (draft plus pre-draft) can look further ahead."""
        return int(self.prompt.draft_tokens.shape[1])

    def draft_next(self, committed: Sequence[int], sent: Sequence[int]) -> DraftedToken:
        """The recorded greedy rollout after ``committed``, at offset ``len(sent)``."""
        j = len(sent)
        if j >= self.reach:
            raise ValueError(f"draft position {j} exceeds the trace's k_max {self.reach}")
        return self._token(len(committed) - self.prompt_len, j)

    def _token(self, s: int, j: int) -> DraftedToken:
        p = self.prompt
        support = None if self.support_row is None else int(p.topp_support[self.support_row, s, j])
        return DraftedToken(int(p.draft_tokens[s, j]), float(p.entropies[s, j]), float(p.token_probs[s, j]),
                            float(p.max_probs[s, j]), topp_support=support)


class TraceVerifier:
    """Greedy verification against the recorded target continuation."""

    def __init__(self, prompt: PromptTrace):
        self.prompt = prompt
        self.prompt_len = len(prompt.prompt_ids)

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        s = len(committed) - self.prompt_len
        target = self.prompt.target_tokens
        accepted = greedy_accepted(draft.tokens, target[s:])
        if s + accepted >= len(target):
            raise ValueError(f"trace too short: round at position {s} needs target token {s + accepted}, "
                             f"the trace has {len(target)}")
        return Verdict(accepted=accepted, token=int(target[s + accepted]))

    def stream(self, committed: Sequence[int], n: int, on_token: Callable[[int], None] | None = None,
               stop_ids: Sequence[int] = ()) -> Burst:
        """A burst: the next ``n`` recorded target tokens (the target decoding alone), up to a stop id."""
        s = len(committed) - self.prompt_len
        target = self.prompt.target_tokens
        if s + n > len(target):
            raise ValueError(f"trace too short: a burst at position {s} needs {n} target tokens, the trace has "
                             f"{len(target) - s}")
        return Burst.collect(target[s:s + n], on_token, stop_ids)

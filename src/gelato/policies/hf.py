"""Hugging Face transformers' assisted generation: the draft-length schedule and the confidence stop.

Checked against transformers 5.x, ``generation/candidate_generator.py`` (``AssistedCandidateGenerator``)
and ``generation/stopping_criteria.py`` (``ConfidenceCriteria``):

- ``num_assistant_tokens_schedule="heuristic"``: after a round, ``num_assistant_tokens += 2`` if every
  candidate was accepted (``num_matches == number of candidates``), else ``max(1, n - 1)``;
  ``"heuristic_transient"`` resets it at every generation call (here: when a new prompt starts,
  ``ctx.generated == 0``); ``"constant"`` never changes it.
- ``assistant_confidence_threshold``: the assistant's ``generate`` stops when the probability of the token
  it has just produced is below the threshold. The stopping criterion runs after the token is appended,
  so that token stays a candidate: here ``STOP_AFTER``.
- With scikit-learn installed, transformers also re-tunes the threshold after every round from the ROC
  curve of (probability, matched) pairs, minimising ``FPR + 3 FNR``; without it the threshold is fixed.
  ``adapt_threshold=True`` reproduces that re-tuning (in pure Python); the default is the fixed threshold.
- Defaults: transformers <= 4.44 used ``num_assistant_tokens=5`` with the heuristic schedule and no
  threshold ("hf-heuristic"); transformers >= 4.45 (and 5.x) default to ``num_assistant_tokens=20``,
  ``"constant"`` and ``assistant_confidence_threshold=0.4`` ("hf-confidence").
"""

from __future__ import annotations

from typing import Literal

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.decoding.types import DraftStep, RoundRecord, StopDecision

Schedule = Literal["heuristic", "heuristic_transient", "constant"]


class HFAssistedPolicy(DraftPolicy):
    """transformers' assisted-generation draft length: heuristic (+2 / -1) or constant schedule, optional
    confidence stop (token kept) with optional ROC re-tuning of the threshold.

    Source: Hugging Face transformers, ``AssistedCandidateGenerator.update_candidate_strategy`` and
    ``ConfidenceCriteria`` (generation/candidate_generator.py, generation/stopping_criteria.py).
    """

    def __init__(self, num_assistant_tokens: int = 5, schedule: Schedule = "heuristic",
                 confidence_threshold: float | None = None, adapt_threshold: bool = False,
                 name: str | None = None) -> None:
        if num_assistant_tokens < 1:
            raise ValueError(f"num_assistant_tokens must be >= 1, got {num_assistant_tokens}")
        if schedule not in ("heuristic", "heuristic_transient", "constant"):
            raise ValueError(f"unknown schedule {schedule!r}: heuristic, heuristic_transient or constant")
        if confidence_threshold is not None and not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
        self.initial = num_assistant_tokens
        self.num_assistant_tokens = num_assistant_tokens
        self.schedule = schedule
        self.threshold = confidence_threshold
        self.adapt_threshold = adapt_threshold
        self.name = name or ("hf-confidence" if confidence_threshold else f"hf-{schedule}")
        self._probs: list[float] = []  # q(token) of every candidate sent (for the ROC re-tuning)
        self._matches: list[int] = []
        self._round_probs: list[float] = []
        self.last_budget = num_assistant_tokens

    def budget(self, ctx: RoundContext) -> int:
        if self.schedule == "heuristic_transient" and ctx.generated == 0:
            self.num_assistant_tokens = self.initial
        self._round_probs = []
        self.last_budget = int(self.num_assistant_tokens)
        return self.last_budget

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        self._round_probs.append(step.token_prob)
        if self.threshold is not None and self.threshold > 0 and step.token_prob < self.threshold:
            return StopDecision.STOP_AFTER
        return StopDecision.CONTINUE

    def observe(self, record: RoundRecord) -> None:
        if self.schedule in ("heuristic", "heuristic_transient"):
            if record.accepted == record.sent:
                self.num_assistant_tokens += 2
            else:
                self.num_assistant_tokens = max(1, self.num_assistant_tokens - 1)
        if self.adapt_threshold and self.threshold:
            self._retune(record)

    def _retune(self, record: RoundRecord) -> None:
        """transformers' ROC re-tuning: matched tokens are positives, the first mismatch a negative, later
        candidates are dropped; choose the threshold minimising FPR + 3 FNR."""
        self._probs.extend(self._round_probs[: record.sent])
        self._matches.extend([1] * record.accepted)
        if len(self._probs) > len(self._matches):
            self._matches.append(0)
        del self._probs[len(self._matches):]
        pos = sum(self._matches)
        neg = len(self._matches) - pos
        if len(self._probs) <= 5 or pos == 0 or neg == 0:
            return
        pairs = sorted(zip(self._probs, self._matches), reverse=True)
        best_cost, best_thr = float("inf"), self.threshold
        tp = fp = 0
        # threshold = +inf first (nothing predicted positive), then each distinct score in decreasing order
        candidates = [(float("inf"), 0, 0)]
        i = 0
        while i < len(pairs):
            score = pairs[i][0]
            while i < len(pairs) and pairs[i][0] == score:
                tp += pairs[i][1]
                fp += 1 - pairs[i][1]
                i += 1
            candidates.append((score, tp, fp))
        for thr, tp_, fp_ in candidates:
            cost = fp_ / neg + 3.0 * (1.0 - tp_ / pos)
            if cost < best_cost:
                best_cost, best_thr = cost, thr
        self.threshold = best_thr

    def state(self) -> dict:
        return {"policy": self.name, "budget": self.last_budget, "num_assistant_tokens": self.num_assistant_tokens,
                "confidence_threshold": self.threshold}


def hf_heuristic(num_assistant_tokens: int = 5, schedule: Schedule = "heuristic", **kw) -> HFAssistedPolicy:
    """transformers <= 4.44 default: start at 5, +2 after a fully accepted round, else -1 (min 1)."""
    return HFAssistedPolicy(num_assistant_tokens, schedule, None, name=kw.pop("name", "hf-heuristic"), **kw)


def hf_confidence(num_assistant_tokens: int = 20, schedule: Schedule = "constant",
                  confidence_threshold: float = 0.4, adapt_threshold: bool = False, **kw) -> HFAssistedPolicy:
    """transformers >= 4.45 default: 20 candidates, constant schedule, stop after a token with q < 0.4."""
    return HFAssistedPolicy(num_assistant_tokens, schedule, confidence_threshold, adapt_threshold,
                            name=kw.pop("name", "hf-confidence"), **kw)

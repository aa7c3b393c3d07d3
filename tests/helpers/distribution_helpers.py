"""Exact two-token target distributions by enumeration over a tiny vocabulary, and the chi-square test the
distribution tests share (in process: tests/test_sampling_distribution.py; over the network:
tests/edge/test_edge_distribution.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import chisquare

from gelato.decoding.sampling import SamplingParams, processed_probs

VOCAB = 6
PROMPT = [1, 4, 2]


def logits_table(model, depth: int = 3) -> dict[tuple[int, ...], torch.Tensor]:
    """Next-token logits after PROMPT + every continuation of length < depth."""
    table = {}
    with torch.inference_mode():
        for n in range(depth):
            for cont in itertools.product(range(VOCAB), repeat=n):
                ids = torch.tensor([PROMPT + list(cont)])
                table[cont] = model(ids).logits[0, -1].float()
    return table


def exact_two_token_probs(target_table, params: SamplingParams) -> np.ndarray:
    probs = np.zeros((VOCAB, VOCAB))
    p1 = processed_probs(target_table[()], params)
    for a in range(VOCAB):
        p2 = processed_probs(target_table[(a,)], params)
        probs[a] = float(p1[a]) * p2.numpy()
    return probs.flatten()


def chi_square_pvalue(samples: Sequence[tuple[int, int]], expected_probs: np.ndarray) -> float:
    counts = np.zeros(VOCAB * VOCAB)
    for a, b in samples:
        counts[a * VOCAB + b] += 1
    keep = expected_probs * len(samples) >= 5  # pool rare cells, as the test requires
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected_probs[keep], expected_probs[~keep].sum()) * len(samples)
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
        assert counts[~keep].sum() == 0, "samples landed where the target has zero probability"
    expected = expected * observed.sum() / expected.sum()  # float32 probabilities: renormalise exactly
    return float(chisquare(observed, expected).pvalue)


class TabledModel:
    """A model's next-token logits after PROMPT + each continuation (:func:`logits_table`: the real model's, computed
    once), served through CachedCausalLM's ``feed``/``truncate`` so the real proposer, verifier and round loop run
    on them at table speed (a forward per sample would make 20,000 samples too slow)."""

    def __init__(self, table: dict[tuple[int, ...], torch.Tensor]) -> None:
        self.table = table

    def feed(self, ids, logits_from=None) -> torch.Tensor:
        start = len(ids) - 1 if logits_from is None else logits_from
        return torch.stack([self.table[tuple(ids[len(PROMPT): i + 1])] for i in range(start, len(ids))])

    def truncate(self, length: int) -> None:
        pass  # nothing is cached

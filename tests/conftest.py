"""Shared fixtures: seeded random tiny Llama pairs with low, partial and full acceptance."""

from __future__ import annotations

import random

import pytest
import torch

from gelato.models.tiny import noisy_copy, tiny_llama

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_target():
    return tiny_llama(vocab_size=64, hidden=32, layers=2, seed=0)


@pytest.fixture(scope="session")
def tiny_drafts(tiny_target):
    """Drafts for ``tiny_target``: unrelated (low acceptance), noisy copy (partial), exact copy (full)."""
    return {
        "unrelated": tiny_llama(vocab_size=64, hidden=16, layers=1, seed=1),
        "noisy": noisy_copy(tiny_target, noise=0.15, seed=2),
        "copy": tiny_target,
    }


def random_prompts(n: int, vocab: int = 64, seed: int = 0, min_len: int = 1, max_len: int = 12) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]

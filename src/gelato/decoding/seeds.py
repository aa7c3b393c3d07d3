"""The seed rule, once: which random stream each party draws from, for one generation seed.

Three parties sample: the device drafts (``device``), the edge verifies (``edge``), and under the DSSD
payload the device also samples the residual the edge defers to it (``residual``). Each gets its own
stream from the one user seed, so the same seed gives the same text in process and over the network
(unbatched, no resumes). A session the device reopens mid-generation gets a fresh verification stream
(:func:`verification_seed`), never a replay of the numbers that decided earlier rounds.
"""

from __future__ import annotations

import torch

EDGE_SEED_OFFSET = 1_000_003  # edge stream = seed + this (distinct from every device stream)
RESIDUAL_SEED_OFFSET = 1  # device's DSSD residual stream = seed + this
_MASK64 = (1 << 64) - 1


def device_seed(seed: int) -> int:
    return seed


def edge_seed(seed: int) -> int:
    return seed + EDGE_SEED_OFFSET


def residual_seed(seed: int) -> int:
    return seed + RESIDUAL_SEED_OFFSET


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def residual_generator(seed: int) -> torch.Generator:
    return generator(residual_seed(seed))


def device_and_edge_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """Independent RNGs for the device (draft sampling) and the edge (verification), from one seed."""
    return generator(device_seed(seed)), generator(edge_seed(seed))


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def session_seed(seed: int, position: int) -> int:
    """Seed of a resumed session's verification RNG: the generation's seed mixed with the resume position."""
    return splitmix64(splitmix64(seed & _MASK64) ^ position) & ((1 << 63) - 1)


def verification_seed(seed: int, prompt_len: int, position: int) -> int:
    """What the device sends as the session's verification seed: :func:`edge_seed` at the first open (the
    in-process verifier's stream), :func:`session_seed` for a session reopened at ``position``."""
    return edge_seed(seed) if position == prompt_len else session_seed(seed, position)

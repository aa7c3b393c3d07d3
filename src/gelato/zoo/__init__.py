"""Model pairs built by the project.

``gelato models build --pair smollm2`` distils the default pair's draft for the fetched SmolLM2 target
(:mod:`gelato.zoo.smollm2_build`). ``--pair gsm8k|code|tiny`` trains a byte-level BPE tokenizer, a
Llama-style target and a draft distilled from it, and writes standard Hugging Face directories plus
``report.json``; the gsm8k pair ships as the fast test pair (``gelato/zoo_data/gsm8k``).
"""

from __future__ import annotations

from gelato.models.pairs import (
    DEFAULT_PAIR,
    FAST_PAIR,
    ZooPairMissingError,
    default_pair_dirs,
    fast_pair_dirs,
    pair_dirs,
    shipped_pairs,
    zoo_data_dir,
)
from gelato.zoo.specs import PAIRS, ModelShape, PairSpec, get_spec


def build_pair(*args, **kwargs):
    """See :func:`gelato.zoo.build.build_pair` (imported lazily: training pulls in tqdm/tokenizers)."""
    from gelato.zoo.build import build_pair as _build

    return _build(*args, **kwargs)


__all__ = ["DEFAULT_PAIR", "FAST_PAIR", "PAIRS", "fast_pair_dirs", "ModelShape", "PairSpec", "ZooPairMissingError", "build_pair",
           "default_pair_dirs", "get_spec", "pair_dirs", "shipped_pairs", "zoo_data_dir"]

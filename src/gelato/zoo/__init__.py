"""Built-in model pairs trained by the project (no downloads).

``gelato models build --pair gsm8k|code|tiny`` trains a byte-level BPE tokenizer, a Llama-style target and
a draft distilled from it, and writes standard Hugging Face directories plus ``report.json``. The gsm8k
pair ships with the package (``gelato/zoo_data/gsm8k``); :func:`default_pair_dirs` points to it.
"""

from __future__ import annotations

from gelato.models.pairs import (DEFAULT_PAIR, ZooPairMissingError, default_pair_dirs, pair_dirs, shipped_pairs,
                                 zoo_data_dir)
from gelato.zoo.specs import PAIRS, ModelShape, PairSpec, get_spec


def build_pair(*args, **kwargs):
    """See :func:`gelato.zoo.build.build_pair` (imported lazily: training pulls in tqdm/tokenizers)."""
    from gelato.zoo.build import build_pair as _build

    return _build(*args, **kwargs)


__all__ = ["DEFAULT_PAIR", "PAIRS", "ModelShape", "PairSpec", "ZooPairMissingError", "build_pair",
           "default_pair_dirs", "get_spec", "pair_dirs", "shipped_pairs", "zoo_data_dir"]

"""Model loading (any Hugging Face causal LM on local disk), KV-cached wrappers, and where pairs live."""

from gelato.models.cached import CachedCausalLM
from gelato.models.loading import (
    ModelLoadError,
    VocabularyMismatchError,
    check_same_vocabulary,
    load_causal_lm,
    load_pair,
    load_tokenizer,
    shared_vocab_size,
)

__all__ = [
    "CachedCausalLM",
    "ModelLoadError",
    "VocabularyMismatchError",
    "check_same_vocabulary",
    "load_causal_lm",
    "load_pair",
    "load_tokenizer",
    "shared_vocab_size",
]

"""Tokenizer fingerprints: device and edge must map the same strings to the same ids.

A fingerprint is a short hash of the vocabulary (id -> token string, in id order) and the EOS id. It
crosses the wire in ``OpenRequest.tokenizer_fingerprint``; the edge refuses a session whose fingerprint
differs from its own (FAILED_PRECONDITION, naming both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def vocab_fingerprint(vocab: Mapping[str, int], eos_token_id: int | None = None) -> str:
    """``sha256:<32 hex>`` of the vocabulary in id order plus the EOS id."""
    h = hashlib.sha256()
    for token, idx in sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])):
        h.update(f"{idx}\t".encode())
        h.update(token.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    h.update(f"eos={eos_token_id}".encode())
    return "sha256:" + h.hexdigest()[:32]


def tokenizer_fingerprint(tokenizer) -> str:
    """Fingerprint of a Hugging Face tokenizer (its full vocabulary, added tokens included)."""
    return vocab_fingerprint(tokenizer.get_vocab(), getattr(tokenizer, "eos_token_id", None))


def synthetic_fingerprint(vocab_size: int, eos_token_id: int | None = None) -> str:
    """Fingerprint of a vocabulary of ``vocab_size`` anonymous tokens (models built without a tokenizer)."""
    return vocab_fingerprint({f"<id{i}>": i for i in range(vocab_size)}, eos_token_id)

"""A draft whose output layer covers only the tokens that occur in its training data.

The draft keeps the target's full vocabulary (ids, embedding rows, the vocabulary check all unchanged);
only the last matmul is limited to ``n`` listed token ids, and every other id gets the logit
:data:`FILL` (probability exactly 0 in float32). Greedy argmax is that of the limited softmax the draft
was trained with, and sampling stays exact: q is the distribution the draft really samples from.
The list lives next to the weights in ``gelato_output_tokens.json``; without it a model is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

OUTPUT_TOKENS_FILE = "gelato_output_tokens.json"
FILL = -1.0e4  # exp(FILL - max) underflows to 0 in float32; finite, so entropies stay finite


class SubsetLMHead(torch.nn.Module):
    """``h (..., d) -> logits (..., vocab)`` computed only for ``token_ids``; :data:`FILL` elsewhere."""

    def __init__(self, weight: torch.Tensor, token_ids: torch.Tensor, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.register_buffer("token_ids", token_ids.to(torch.long), persistent=False)
        self.weight = torch.nn.Parameter(weight.detach()[self.token_ids].clone(), requires_grad=weight.requires_grad)

    def subset_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden (..., d) -> (..., n)`` logits over the listed tokens, in list order."""
        return hidden @ self.weight.t()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        sub = self.subset_logits(hidden)
        out = sub.new_full((*sub.shape[:-1], self.vocab_size), FILL)
        return out.index_copy_(-1, self.token_ids, sub)


def read_output_tokens(path: Path) -> list[int] | None:
    f = Path(path) / OUTPUT_TOKENS_FILE
    if not f.is_file():
        return None
    ids = json.loads(f.read_text())["token_ids"]
    return [int(i) for i in ids]


def write_output_tokens(path: Path, token_ids: list[int]) -> None:
    (Path(path) / OUTPUT_TOKENS_FILE).write_text(json.dumps({"token_ids": sorted(int(i) for i in token_ids)}))


def apply_output_subset(model: torch.nn.Module, token_ids: list[int]) -> torch.nn.Module:
    """Replace ``model.lm_head`` by a :class:`SubsetLMHead` over ``token_ids`` (rows of the current head)."""
    head = model.get_output_embeddings()
    ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long, device=head.weight.device)
    if ids.numel() == 0 or int(ids.max()) >= head.weight.shape[0] or int(ids.min()) < 0:
        raise ValueError(f"output token ids must lie in [0, {head.weight.shape[0]}) and not be empty")
    model.config.tie_word_embeddings = False
    model.lm_head = SubsetLMHead(head.weight, ids, head.weight.shape[0])
    return model

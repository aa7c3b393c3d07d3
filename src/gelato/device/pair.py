"""One assembly of the remote pair: the device's proposer and a :class:`RemoteVerifier` with an open session.

The remote counterpart of :func:`gelato.generation.pair.local_pair`, used by every networked caller (``gelato
device``, the API server, the testbed's device process). The session is opened here, so the verifier knows
the edge's vocabulary and its largest draft per round (``RemoteVerifier.max_draft``, the round loop's
ceiling); the proposer drafts over the vocabulary both sides share, seeded by the seed rule
(:mod:`gelato.decoding.seeds`: the device's stream from ``seed``, the edge's verification from the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from gelato.decoding.sampling import SamplingParams
from gelato.device.client import RemoteVerifier
from gelato.device.edge_client import EdgeClient
from gelato.generation.adapters import DraftModelProposer
from gelato.generation.pair import draft_proposer


def remote_pair(draft: torch.nn.Module, client: EdgeClient | str, params: SamplingParams,
                prompt_ids: Sequence[int], *, fingerprint: str, seed: int = 0,
                on_verifier: Callable[[RemoteVerifier], object] | None = None,
                **verifier_kw) -> tuple[DraftModelProposer, RemoteVerifier]:
    """(proposer, verifier) for ``draft`` against the edge at ``client``, its session open on ``prompt_ids``.

    ``verifier_kw`` go to :class:`RemoteVerifier` (payload, device name, timeouts...). ``on_verifier`` sees the
    verifier before its open (e.g. to cancel a long prefill from another thread). A failed open closes it."""
    verifier = RemoteVerifier(client, params, fingerprint=fingerprint, seed=seed, **verifier_kw)
    if on_verifier is not None:
        on_verifier(verifier)
    try:
        reply = verifier.open(prompt_ids)
    except BaseException:
        verifier.close()
        raise
    vocab = min(int(draft.config.vocab_size), int(reply.vocab_size))
    return draft_proposer(draft, params, seed, vocab, verifier.payload.mode), verifier

"""The edge-backed verifier, in one place: a request's session with a remote ``gelato serve``.

Everything the API server needs from the transport goes through :class:`EdgeSession`, so a change of the
device client's API is absorbed here. It opens the session (prefilling the prompt on the edge), verifies
rounds, reports each round's measured message sizes, and closes the session.
"""

from __future__ import annotations

from collections.abc import Sequence

from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Draft, Verdict
from gelato.device.client import RemoteVerifier
from gelato.device.edge_client import EdgeClient
from gelato.wire.errors import TransportError

__all__ = ["EdgeSession", "TransportError"]


class EdgeSession:
    def __init__(self, address: str, params: SamplingParams, *, fingerprint: str, seed: int, payload: str,
                 max_new_tokens: int, token: str | None = None, rpc_timeout: float = 10.0,
                 unreachable_after: float = 30.0, device_name: str = "gelato-api", tls: bool = False,
                 tls_ca: bytes | None = None, server_name: str | None = None) -> None:
        self._client = EdgeClient(address, token=token, tls=tls, root_ca=tls_ca, server_name=server_name)
        self._remote = RemoteVerifier(self._client, params, fingerprint=fingerprint, seed=seed, payload=payload,
                                      device_name=device_name, max_new_tokens=max_new_tokens,
                                      rpc_timeout=rpc_timeout, unreachable_after=unreachable_after)

    def open(self, prompt_ids: Sequence[int]) -> tuple[int, int | None]:
        """Open the session with the prompt; (the edge's vocabulary size, its largest draft per round)."""
        reply = self._remote.open(prompt_ids)
        return int(reply.vocab_size), (int(reply.max_draft_tokens) or None)

    def verify(self, committed: Sequence[int], draft: Draft) -> Verdict:
        return self._remote.verify(committed, draft)

    def last_round_bytes(self) -> tuple[int, int]:
        """(uplink, downlink) bytes of the last round's messages, as sent and received."""
        t = self._remote.stats.timings[-1]
        return t.up_bytes, t.down_bytes

    def cancel(self) -> None:
        """End the session now, from any thread (the client went away): an open waiting for its prefill ends."""
        self._remote.cancel()

    def close(self) -> None:
        self._remote.close()
        self._client.close()

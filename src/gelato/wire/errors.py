"""Errors of the device-edge transport.

Server side, :class:`RequestError` carries the gRPC status a handler answers with. Client side, every
error that ends a generation carries the tokens committed so far (``committed_ids``): they are the
target's output up to that point, never a partial or corrupted round.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc


class RequestError(Exception):
    """A request the edge refuses: the handler aborts the call with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class MalformedMessage(RequestError, ValueError):
    """A message that breaks the wire format's rules (wrong lengths, ids outside the vocabulary, values that are not
    probabilities, an undeclared payload...): the one error ``wire`` raises for them. The edge answers it with its
    status (INVALID_ARGUMENT); the device, receiving one from the edge, ends the generation with a TransportError."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


class TransportError(RuntimeError):
    """A generation over the network stopped; ``committed_ids`` holds prompt + tokens committed so far."""

    def __init__(self, message: str, committed_ids: Sequence[int] = (), prompt_len: int = 0) -> None:
        super().__init__(message)
        self.committed_ids = list(committed_ids)
        self.prompt_len = prompt_len

    @property
    def generated_ids(self) -> list[int]:
        """Tokens generated (and verified by the target) before the failure."""
        return self.committed_ids[self.prompt_len:]


class EdgeUnavailableError(TransportError):
    """The edge stayed unreachable (UNAVAILABLE / DEADLINE_EXCEEDED) for longer than the client allows."""

    def __init__(self, message: str, committed_ids: Sequence[int] = (), prompt_len: int = 0,
                 last_code: grpc.StatusCode | None = None, waited_s: float = 0.0) -> None:
        super().__init__(message, committed_ids, prompt_len)
        self.last_code = last_code
        self.waited_s = waited_s


class EdgeRejectedError(TransportError):
    """The edge answered with a non-retryable status (bad request, auth, limits...)."""

    def __init__(self, code: grpc.StatusCode, details: str, committed_ids: Sequence[int] = (),
                 prompt_len: int = 0) -> None:
        super().__init__(f"edge rejected the request with {code.name}: {details}", committed_ids, prompt_len)
        self.code = code
        self.details = details


class EdgeTLSError(TransportError):
    """The TLS handshake failed (wrong CA, wrong server name, TLS against a plaintext edge or the reverse)."""


class EdgeCancelledError(TransportError):
    """The generation was cancelled by :meth:`RemoteVerifier.close` from another thread."""

"""The rules an edge session applies to Open and to each round, as plain functions (no gRPC server needed).

Each raises :class:`~gelato.wire.errors.RequestError` with the status the edge answers:
INVALID_ARGUMENT for malformed or oversized input, FAILED_PRECONDITION for a round that does not
follow the session (the device resynchronises by opening a new stream), OUT_OF_RANGE for a session that
would outgrow the model's context.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from gelato.decoding.sampling import SamplingParams
from gelato.wire.codec import MAX_STREAM_TOKENS
from gelato.wire.errors import RequestError

# Below this, logits / temperature overflows float32 and no round can ever be verified (0 means greedy).
MIN_TEMPERATURE = 1e-4
# ... compared as the wire carries it: a float32, in which the documented minimum 0.0001 reads 9.99999974e-05
_MIN_TEMPERATURE_WIRE = struct.unpack("f", struct.pack("f", MIN_TEMPERATURE))[0]


@dataclass(frozen=True)
class Limits:
    max_prompt_tokens: int
    max_draft_tokens: int
    max_context: int
    vocab_size: int
    max_stream_tokens: int = MAX_STREAM_TOKENS  # the most tokens one burst may ask for


def _refuse(code: grpc.StatusCode, message: str) -> RequestError:
    return RequestError(code, message)


def check_open(prompt: Sequence[int], params: SamplingParams, max_new_tokens: int, limits: Limits) -> None:
    """Refuse at Open whatever could never verify: empty/oversized prompts, ids outside the vocabulary,
    a temperature too small to divide logits by, and a prompt that leaves no room for one more token."""
    if not prompt:
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT, "the prompt is empty")
    if len(prompt) > limits.max_prompt_tokens:
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                      f"prompt has {len(prompt)} tokens; this edge accepts at most {limits.max_prompt_tokens}")
    bad = next((i for i, t in enumerate(prompt) if t >= limits.vocab_size), None)
    if bad is not None:
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                      f"prompt_ids[{bad}] = {prompt[bad]} is outside the vocabulary (size {limits.vocab_size})")
    if 0.0 < params.temperature < _MIN_TEMPERATURE_WIRE:
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                      f"temperature {params.temperature:g} is too small to sample with (at least "
                      f"{MIN_TEMPERATURE:g}; use 0 for greedy decoding)")
    if len(prompt) + max(1, max_new_tokens) > limits.max_context:
        raise _refuse(grpc.StatusCode.OUT_OF_RANGE,
                      f"prompt ({len(prompt)}) + max_new_tokens ({max(1, max_new_tokens)}) exceeds the model "
                      f"context of {limits.max_context} tokens")


def check_round(*, round_id: int, last_round: int, position: int, held: int, n_pending: int, n_draft: int,
                limits: Limits, stream_tokens: int = 0, tokens_left: int | None = None) -> None:
    """A round must be the session's next one, continue exactly where the edge stands, and fit the limits.

    ``held``: committed tokens on the edge; ``position``: committed tokens on the device, ``n_pending`` of
    which the edge has not seen. A burst (``stream_tokens`` > 0) sends no draft and asks for at most
    ``limits.max_stream_tokens`` and at most ``tokens_left`` (the session's max_new_tokens left; None: no bound).
    """
    if stream_tokens:
        if n_draft:
            raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                          f"a burst (stream_tokens = {stream_tokens}) carries no draft, got {n_draft} tokens")
        if stream_tokens > limits.max_stream_tokens:
            raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                          f"stream_tokens = {stream_tokens}; this edge streams at most {limits.max_stream_tokens} "
                          "tokens per burst")
        if tokens_left is not None and stream_tokens > tokens_left:
            raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                          f"stream_tokens = {stream_tokens} but only {tokens_left} of the session's max_new_tokens "
                          "are left")
    if round_id != last_round + 1:
        raise _refuse(grpc.StatusCode.FAILED_PRECONDITION,
                      f"round {round_id} is out of order: the session's next round is {last_round + 1}")
    if n_draft > limits.max_draft_tokens:
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                      f"draft has {n_draft} tokens; this edge verifies at most {limits.max_draft_tokens} per round")
    if n_pending > limits.max_draft_tokens + 1:
        raise _refuse(grpc.StatusCode.INVALID_ARGUMENT,
                      f"{n_pending} pending ids; at most {limits.max_draft_tokens + 1} per round "
                      "(open a new stream to resynchronise)")
    if position != held + n_pending:
        raise _refuse(grpc.StatusCode.FAILED_PRECONDITION,
                      f"position mismatch: the draft continues after {position} committed tokens but the edge "
                      f"holds {held} (+{n_pending} pending); open a new stream")
    new = max(n_draft + 1, stream_tokens)
    if held + n_pending + new > limits.max_context:
        raise _refuse(grpc.StatusCode.OUT_OF_RANGE,
                      f"the session would reach {held + n_pending + new} tokens, past the model context "
                      f"of {limits.max_context}")

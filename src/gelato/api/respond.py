"""From a validated request to text pieces: prompt ids, limits, the generation job, text per round.

:func:`prepare` checks the limits (400s) and resolves the settings; :func:`text_pieces` runs the job and
yields one :class:`Piece` per committed round (text may be empty: held back for a multi-byte character
or a possible stop string), then a :class:`Finish` with the finish reason, the usage and any error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from gelato.api.backend import Backend
from gelato.api.errors import APIError, bad_request
from gelato.api.generation import GenerationJob, RoundEvent, TokenEvent
from gelato.api.metrics import ApiMetrics
from gelato.api.schemas import ChatCompletionRequest, CompletionRequest
from gelato.api.speculative import Speculation, resolve
from gelato.api.text import IncrementalDetokenizer, StopStringMatcher
from gelato.api.usage import UsageTally
from gelato.decoding.sampling import SamplingParams
from gelato.models.chat import encode_messages


@dataclass
class Limits:
    max_tokens: int = 1024  # the largest max_tokens a request may ask for
    default_max_tokens: int = 256  # when a request gives none
    max_concurrent: int = 8
    max_body_bytes: int = 1 << 20
    api_keys: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Prepared:
    prompt_ids: list[int]
    params: SamplingParams
    seed: int | None
    spec: Speculation
    max_new_tokens: int
    eos_token_id: int | None
    stops: list[str]


@dataclass
class Piece:
    text: str
    event: RoundEvent | None  # None: a token of an edge burst, before its round ends
    tokens: int  # response tokens this round (or burst token) contributed


@dataclass
class Finish:
    finish_reason: str | None  # "stop" | "length"; None after an error
    usage: dict
    error: APIError | None = None
    text: str = ""  # held-back text released at the end


def prepare(req: CompletionRequest | ChatCompletionRequest, backend: Backend, default: Speculation,
            limits: Limits) -> Prepared:
    tok = backend.tokenizer
    if isinstance(req, ChatCompletionRequest):
        ids, where = encode_messages(tok, [{"role": m.role, "content": m.text} for m in req.messages]), "messages"
        asked, asked_name = req.token_limit, ("max_completion_tokens" if req.max_completion_tokens else "max_tokens")
    else:
        ids = list(req.prompt) if isinstance(req.prompt, list) else list(tok(req.prompt)["input_ids"])
        where, asked, asked_name = "prompt", req.max_tokens, "max_tokens"
        vocab = len(tok)
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise bad_request(f"prompt token ids {bad[:5]} are outside the vocabulary of {vocab}", param="prompt")
    if not ids:
        raise bad_request("the prompt is empty", param=where)
    if asked is not None and asked > limits.max_tokens:
        raise bad_request(f"{asked_name} = {asked} is above this server's limit of {limits.max_tokens}",
                          param=asked_name, code="invalid_value")
    room = backend.context_window - len(ids)
    max_new = asked if asked is not None else min(limits.default_max_tokens, room)
    if room < 1:
        raise bad_request(f"this model's context is {backend.context_window} tokens and the {where} alone has "
                          f"{len(ids)}: shorten it", param=where, code="context_length_exceeded")
    if max_new > room:
        raise bad_request(f"this model's context is {backend.context_window} tokens; the {where} has {len(ids)} "
                          f"and {max_new} more were asked for", param=where, code="context_length_exceeded")
    try:
        params = SamplingParams(temperature=req.temperature, top_k=max(0, req.top_k), top_p=req.top_p)
    except ValueError as exc:
        raise bad_request(str(exc), param="temperature") from None
    spec = resolve(req.speculative, default)
    eos = None if req.ignore_eos else backend.eos_token_id
    return Prepared(ids, params, req.seed, spec, max_new, eos, req.stop_strings)


def start_job(p: Prepared, backend: Backend, executor: Executor) -> GenerationJob:
    job = GenerationJob(lambda cancelled: backend.parts(p.prompt_ids, p.params, p.seed, p.spec, p.max_new_tokens,
                                                        cancelled),
                        p.prompt_ids, p.max_new_tokens, p.eos_token_id)
    job.start(executor)
    return job


async def text_pieces(job: GenerationJob, p: Prepared, backend: Backend, metrics: ApiMetrics,
                      arrived: float) -> AsyncIterator[Piece | Finish]:
    """The job's rounds as text; cancels the job when a stop string ends the text or the consumer leaves."""
    detok = IncrementalDetokenizer(backend.tokenizer, p.prompt_ids)
    stops = StopStringMatcher(p.stops)
    tally = UsageTally(len(p.prompt_ids), p.spec, "measured" if backend.mode == "edge" or backend.batch else "modelled")
    metrics.prompt_tokens.inc(len(p.prompt_ids))
    last = arrived
    finished = False
    try:
        streamed = 0  # tokens of the current burst already turned into text (TokenEvents)
        async for event in job.events():
            if isinstance(event, TokenEvent):
                if stops.stopped:
                    continue
                streamed += 1
                text = stops.feed(detok.add(event.token))
                yield Piece(text, None, 1)  # after a stop string, the burst's RoundEvent tallies it and finishes
                continue
            if isinstance(event, RoundEvent):
                text, counted = "", 0
                for i, token in enumerate(event.record.tokens):
                    if i < streamed:  # a burst's token, fed as it arrived
                        counted += 1
                        continue
                    if stops.stopped:
                        break
                    counted += 1
                    text += stops.feed(detok.add(token))
                streamed = 0
                tally.add(event, counted)
                metrics.round(event, counted, event.at - last, first=tally.rounds == 1)
                last = event.at
                yield Piece(text, event, counted)
                if stops.stopped:
                    job.cancel()
                    finished = True
                    yield _finish("stop", tally, metrics)
                    return
                continue
            if event.stop_reason == "cancelled":
                return
            finished = True
            if event.stop_reason == "error":
                yield Finish(None, tally.usage(), _edge_error(event.error))
                return
            reason = "stop" if event.stop_reason == "eos" else "length"
            yield _finish(reason, tally, metrics, stops.flush())
            return
    finally:
        job.cancel()  # the consumer went away (client disconnect) or finished: stop the rounds
        if not finished:
            metrics.cancelled.inc()
        metrics.e2e.observe(time.perf_counter() - arrived)


def _finish(reason: str, tally: UsageTally, metrics: ApiMetrics, text: str = "") -> Finish:
    metrics.requests.labels(finished_reason=reason).inc()
    return Finish(reason, tally.usage(), None, text)


def _edge_error(exc: BaseException | None) -> APIError:
    from gelato.wire.errors import TransportError

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, TransportError):
        return APIError(502, f"the edge failed during generation: {exc}", code="edge_unavailable",
                        type="server_error")
    return APIError(500, f"generation failed: {type(exc).__name__}: {exc}", code="generation_failed")

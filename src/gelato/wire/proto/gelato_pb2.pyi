from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingSettings(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class SparseDistribution(_message.Message):
    __slots__ = ("ids", "probs")
    IDS_FIELD_NUMBER: _ClassVar[int]
    PROBS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    probs: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., probs: _Optional[_Iterable[float]] = ...) -> None: ...

class DraftUp(_message.Message):
    __slots__ = ("session", "position", "round", "pending_ids", "token_ids", "q", "q_token", "q_packed", "entropies", "stream_tokens", "q_int", "redraw", "dense")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PENDING_IDS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    Q_TOKEN_FIELD_NUMBER: _ClassVar[int]
    Q_PACKED_FIELD_NUMBER: _ClassVar[int]
    ENTROPIES_FIELD_NUMBER: _ClassVar[int]
    STREAM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    Q_INT_FIELD_NUMBER: _ClassVar[int]
    REDRAW_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    session: int
    position: int
    round: int
    pending_ids: _containers.RepeatedScalarFieldContainer[int]
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    q: _containers.RepeatedCompositeFieldContainer[SparseDistribution]
    q_token: _containers.RepeatedScalarFieldContainer[float]
    q_packed: _containers.RepeatedScalarFieldContainer[bytes]
    entropies: _containers.RepeatedScalarFieldContainer[float]
    stream_tokens: int
    q_int: _containers.RepeatedScalarFieldContainer[int]
    redraw: bool
    dense: bool
    def __init__(self, session: _Optional[int] = ..., position: _Optional[int] = ..., round: _Optional[int] = ..., pending_ids: _Optional[_Iterable[int]] = ..., token_ids: _Optional[_Iterable[int]] = ..., q: _Optional[_Iterable[_Union[SparseDistribution, _Mapping]]] = ..., q_token: _Optional[_Iterable[float]] = ..., q_packed: _Optional[_Iterable[bytes]] = ..., entropies: _Optional[_Iterable[float]] = ..., stream_tokens: _Optional[int] = ..., q_int: _Optional[_Iterable[int]] = ..., redraw: _Optional[bool] = ..., dense: _Optional[bool] = ...) -> None: ...

class VerdictDown(_message.Message):
    __slots__ = ("session", "round", "accepted", "token", "has_token", "target_p", "position", "streamed", "last", "draw_ids", "draw_p")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TARGET_P_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    DRAW_IDS_FIELD_NUMBER: _ClassVar[int]
    DRAW_P_FIELD_NUMBER: _ClassVar[int]
    session: int
    round: int
    accepted: int
    token: int
    has_token: bool
    target_p: SparseDistribution
    position: int
    streamed: bool
    last: bool
    draw_ids: _containers.RepeatedScalarFieldContainer[int]
    draw_p: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, session: _Optional[int] = ..., round: _Optional[int] = ..., accepted: _Optional[int] = ..., token: _Optional[int] = ..., has_token: _Optional[bool] = ..., target_p: _Optional[_Union[SparseDistribution, _Mapping]] = ..., position: _Optional[int] = ..., streamed: _Optional[bool] = ..., last: _Optional[bool] = ..., draw_ids: _Optional[_Iterable[int]] = ..., draw_p: _Optional[_Iterable[float]] = ...) -> None: ...

class PayloadSettings(_message.Message):
    __slots__ = ("mode", "draws")
    MODE_FIELD_NUMBER: _ClassVar[int]
    DRAWS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    draws: int
    def __init__(self, mode: _Optional[str] = ..., draws: _Optional[int] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("prompt_ids", "sampling", "device_name", "tokenizer_fingerprint", "max_new_tokens", "report_times", "stop_ids", "payload")
    PROMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REPORT_TIMES_FIELD_NUMBER: _ClassVar[int]
    STOP_IDS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    prompt_ids: _containers.RepeatedScalarFieldContainer[int]
    sampling: SamplingSettings
    device_name: str
    tokenizer_fingerprint: str
    max_new_tokens: int
    report_times: bool
    stop_ids: _containers.RepeatedScalarFieldContainer[int]
    payload: PayloadSettings
    def __init__(self, prompt_ids: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[SamplingSettings, _Mapping]] = ..., device_name: _Optional[str] = ..., tokenizer_fingerprint: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., report_times: _Optional[bool] = ..., stop_ids: _Optional[_Iterable[int]] = ..., payload: _Optional[_Union[PayloadSettings, _Mapping]] = ...) -> None: ...

class OpenReply(_message.Message):
    __slots__ = ("session", "vocab_size", "max_draft_tokens", "model_name")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_DRAFT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    session: int
    vocab_size: int
    max_draft_tokens: int
    model_name: str
    def __init__(self, session: _Optional[int] = ..., vocab_size: _Optional[int] = ..., max_draft_tokens: _Optional[int] = ..., model_name: _Optional[str] = ...) -> None: ...

class CloseRequest(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: int
    def __init__(self, session: _Optional[int] = ...) -> None: ...

class CloseReply(_message.Message):
    __slots__ = ("rounds", "tokens")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    tokens: int
    def __init__(self, rounds: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class EdgeTimes(_message.Message):
    __slots__ = ("server_ms", "queue_ms", "forward_ms", "batch")
    SERVER_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    server_ms: float
    queue_ms: float
    forward_ms: float
    batch: int
    def __init__(self, server_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., forward_ms: _Optional[float] = ..., batch: _Optional[int] = ...) -> None: ...

class StreamUp(_message.Message):
    __slots__ = ("open", "draft", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: OpenRequest
    draft: DraftUp
    close: CloseRequest
    def __init__(self, open: _Optional[_Union[OpenRequest, _Mapping]] = ..., draft: _Optional[_Union[DraftUp, _Mapping]] = ..., close: _Optional[_Union[CloseRequest, _Mapping]] = ...) -> None: ...

class StreamDown(_message.Message):
    __slots__ = ("opened", "verdict", "closed", "times")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    opened: OpenReply
    verdict: VerdictDown
    closed: CloseReply
    times: EdgeTimes
    def __init__(self, opened: _Optional[_Union[OpenReply, _Mapping]] = ..., verdict: _Optional[_Union[VerdictDown, _Mapping]] = ..., closed: _Optional[_Union[CloseReply, _Mapping]] = ..., times: _Optional[_Union[EdgeTimes, _Mapping]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("status", "active_sessions", "model_name")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    status: str
    active_sessions: int
    model_name: str
    def __init__(self, status: _Optional[str] = ..., active_sessions: _Optional[int] = ..., model_name: _Optional[str] = ...) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetricsReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

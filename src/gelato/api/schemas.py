"""Request bodies of ``/v1/completions`` and ``/v1/chat/completions``, validated.

Fields that would change the output and are not implemented (``n > 1``, ``logprobs``, ``tools``, ...) are
refused by name rather than ignored; fields that do not change the output (``user``, ``metadata``, ...)
are accepted and ignored; anything else is an unknown field, also refused by name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gelato.api.errors import APIError, bad_request, unsupported
from gelato.decoding.payload_modes import PAYLOAD_CHOICES
from gelato.edge.rounds import MIN_TEMPERATURE

# strict: no lax coercions (``max_tokens: true`` or ``"8"``, ``stream: "yes"``, ``prompt: [true]``);
# no Infinity or NaN in any number
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

# the drafting payload modes of gelato.decoding.payload_modes, as JSON strings (strict mode takes no Enum)
PayloadName = Literal[PAYLOAD_CHOICES]  # type: ignore[valid-type]
MAX_STOP_STRINGS = 4

# field -> predicate that is true when the value asks for something this server does not do
_UNSUPPORTED: dict[str, Any] = {
    "n": lambda v: v not in (None, 1),
    "best_of": lambda v: v not in (None, 1),
    "logprobs": lambda v: v not in (None, False, 0),
    "top_logprobs": lambda v: v not in (None, 0),
    "echo": lambda v: v not in (None, False),
    "suffix": lambda v: v not in (None, ""),
    "logit_bias": lambda v: bool(v),
    "presence_penalty": lambda v: v not in (None, 0, 0.0),
    "frequency_penalty": lambda v: v not in (None, 0, 0.0),
    "tools": lambda v: bool(v),
    "tool_choice": lambda v: v not in (None, "none"),
    "functions": lambda v: bool(v),
    "function_call": lambda v: v not in (None, "none"),
    "response_format": lambda v: v not in (None, {"type": "text"}),
    "audio": lambda v: v is not None,
    "modalities": lambda v: v not in (None, ["text"]),
    "prediction": lambda v: v is not None,
    "reasoning_effort": lambda v: v is not None,
    "web_search_options": lambda v: v is not None,
}
_IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls", "safety_identifier",
                      "prompt_cache_key"})


class SpeculativeSettings(BaseModel):
    """Per-request speculation; every field left out takes the server's default (its command-line flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    policy: str | None = Field(None, description="a draft-length policy by name (`gelato policies` lists them)")
    num_draft_tokens: int | None = Field(None, ge=1, le=64, description="K for static policies, else the "
                                         "largest draft length")
    e_bar: float | None = Field(None, gt=0, description="device energy budget per round, J (GELATO policies)")
    payload: PayloadName | None = None


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class _Common(BaseModel):
    model_config = _STRICT
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=-1, description="vLLM's extension; 0 or -1 disables it")
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(False, description="vLLM's extension: keep generating after the end-of-text token")
    speculative: SpeculativeSettings | None = None

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v):
        if 0 < v < MIN_TEMPERATURE:
            raise ValueError(f"{v:g} is too small to sample with (at least {MIN_TEMPERATURE:g}; 0 is greedy)")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(stops)}")
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @property
    def stop_strings(self) -> list[str]:
        return list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list) and v and isinstance(v[0], str):
            if len(v) != 1:
                raise ValueError(f"one prompt per request is supported, got {len(v)}")
            return v[0]
        if isinstance(v, list) and not v:
            raise ValueError("the prompt is empty")
        return v


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def parse_request(body: Any, model: type[_Common]) -> _Common:
    """Validate a decoded JSON body; :class:`APIError` (400) naming the first offending field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    for name, asks_for_more in _UNSUPPORTED.items():
        if name in body and asks_for_more(body[name]):
            raise unsupported(name, _why(name, body[name]))
    if body.get("stream_options") is not None and not body.get("stream"):
        raise bad_request("'stream_options' is only allowed with 'stream': true", param="stream_options")
    _check_messages(body.get("messages"))
    _check_text(body)
    fields = {k: v for k, v in body.items() if k not in _IGNORED and k not in _UNSUPPORTED}
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise _first_error(exc) from None


def _check_text(value: Any, where: str = "") -> None:
    """400 naming the field that holds a lone surrogate (not text: it cannot be encoded or tokenized)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_request(f"'{where}' is not valid Unicode text (a lone surrogate "
                              f"{value[exc.start]!r} at character {exc.start})", param=where) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, f"{where}[{i}]")


def _why(name: str, value: Any) -> str:
    if name in ("n", "best_of"):
        return f"one choice per request (n = 1), got {value}"
    return f"got {value!r}"[:200]


def _check_messages(messages: Any) -> None:
    """Tool messages and tool calls are refused by name, before the generic validation."""
    if not isinstance(messages, list):
        return
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        if m.get("role") in ("tool", "function"):
            raise unsupported(f"messages[{i}].role", f"role {m['role']!r} (tool use is not supported)")
        for key in ("tool_calls", "function_call", "audio", "refusal"):
            if m.get(key):
                raise unsupported(f"messages[{i}].{key}")
        content = m.get("content")
        if m.get("role") == "user" and _blank(content):  # as the CLI: no empty prompt
            raise bad_request(f"messages[{i}] is empty: a user message needs some text",
                              param=f"messages[{i}].content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") not in (None, "text"):
                    raise unsupported(f"messages[{i}].content[{j}].type",
                                      f"content part {part.get('type')!r} (only text)")


def _blank(content: Any) -> bool:
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, list):
        return all(isinstance(p, dict) and isinstance(p.get("text"), str) and not p["text"].strip() for p in content)
    return False


def _first_error(exc: ValidationError) -> APIError:
    err = exc.errors()[0]
    loc = [str(x) for x in err["loc"]]
    # pydantic's union branches add type names to the location ("str", "list[int]"): drop them
    loc = [x for x in loc if not any(c in x for c in "[]") and x not in ("str", "int", "list", "TextPart")]
    param = ".".join(loc) or None
    if err["type"] == "extra_forbidden":
        return APIError(400, f"unknown field '{param}'", param=param, code="unknown_parameter")
    if err["type"] == "missing":
        return APIError(400, f"'{param}' is required", param=param, code="missing_required_parameter")
    msg = err["msg"].removeprefix("Value error, ")
    return APIError(400, f"invalid '{param}': {msg}", param=param, code="invalid_value")

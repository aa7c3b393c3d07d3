"""OpenAI's response objects: completions and chat completions, whole and as stream chunks."""

from __future__ import annotations

import json
import time
import uuid

from gelato.api.generation import RoundEvent


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def round_info(event: RoundEvent, tokens: int) -> dict:
    """What one round did; carried by its stream chunk (an extension field, ignored by other clients)."""
    r = event.record
    return {"index": r.index, "budget": r.budget, "drafted": r.drafted, "sent": r.sent, "accepted": r.accepted,
            "predrafted": r.predrafted, "carried": r.carried, "tokens": tokens, "uplink_bytes": event.up_bytes, "downlink_bytes": event.down_bytes}


class ResponseFormat:
    """Builds the objects of one response (one id, one creation time)."""

    def __init__(self, chat: bool, model: str, include_usage: bool = False) -> None:
        self.chat = chat
        self.model = model
        self.include_usage = include_usage
        self.id = new_id(chat)
        self.created = int(time.time())
        self._role_sent = False

    def _base(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, text: str, finish_reason: str, usage: dict) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish_reason}
            return {**self._base("chat.completion"), "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._base("text_completion"), "choices": [choice], "usage": usage}

    def chunk(self, text: str, finish_reason: str | None = None, round_: dict | None = None) -> dict:
        if self.chat:
            delta: dict = {"content": text}
            if not self._role_sent:
                delta = {"role": "assistant", "content": text}
                self._role_sent = True
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            out = {**self._base("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            out = {**self._base("text_completion"), "choices": [choice]}
        if self.include_usage:
            out["usage"] = None
        if round_ is not None:
            out["round"] = round_
        return out

    def usage_chunk(self, usage: dict) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._base(obj), "choices": [], "usage": usage}


def sse(obj: dict | str) -> bytes:
    """One server-sent event (``data: ...`` and a blank line)."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n".encode()

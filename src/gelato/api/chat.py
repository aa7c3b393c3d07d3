"""Chat messages to prompt ids: the tokenizer's chat template, or a plain rendering when it has none.

One small function, meant to be swapped for the models layer's chat helper once that exists.
"""

from __future__ import annotations

from collections.abc import Sequence


def render_plain(messages: Sequence[dict]) -> str:
    """``role: content`` lines and an open ``assistant:`` turn (for tokenizers without a chat template)."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def encode_chat(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Prompt ids for ``messages`` (dicts with ``role`` and ``content`` strings), ready for the assistant's turn."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    else:
        text = render_plain(messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_text(tokenizer, prompt: str) -> list[int]:
    """Prompt ids of a plain completion prompt (the tokenizer's own special tokens, as ``gelato generate``)."""
    return list(tokenizer(prompt)["input_ids"])

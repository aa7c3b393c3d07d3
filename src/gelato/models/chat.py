"""Prompts in and text out: the tokenizer's chat template, the end-of-turn stop token, clean decoding.

Every command that turns user text into prompt ids, or ids into printed text, goes through here so that
``generate``, ``demo``, ``device`` and ``serve`` agree on the format.
"""

from __future__ import annotations

from collections.abc import Sequence

# Tokens that close an assistant turn in common chat templates (ChatML, Llama 3, Gemma).
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


class EmptyPromptError(ValueError):
    """The prompt encodes to no tokens."""


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_text(tokenizer, text: str, system: str | None = None) -> str:
    """``text`` as one user turn (after an optional system turn), ending with the assistant's header."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompt(tokenizer, text: str, raw: bool = False, system: str | None = None) -> list[int]:
    """Prompt ids: through the chat template when the tokenizer has one and ``raw`` is false.

    ``raw`` sends ``text`` as is (with the tokenizer's usual special tokens); ``system`` replaces the
    template's default system turn. Raises :class:`EmptyPromptError` for an empty prompt.
    """
    if not text.strip():
        raise EmptyPromptError("the prompt is empty" + (" (only spaces)" if text else "") +
                               ": give --prompt with some text")
    if system and (raw or not has_chat_template(tokenizer)):
        raise ValueError("--system needs a tokenizer with a chat template and no --raw")
    if raw or not has_chat_template(tokenizer):
        ids = tokenizer(text)["input_ids"]
    else:
        ids = tokenizer(chat_text(tokenizer, text, system), add_special_tokens=False)["input_ids"]
    if not ids:
        raise EmptyPromptError("the prompt is empty: give --prompt with some text")
    return list(ids)


def render_plain(messages: Sequence[dict]) -> str:
    """``role: content`` lines and an open ``assistant:`` turn (for tokenizers without a chat template)."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def encode_messages(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Prompt ids of a whole conversation (dicts with ``role`` and ``content``), ready for the assistant's
    turn: the chat template when the tokenizer has one, else :func:`render_plain`."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    else:
        text = render_plain(messages)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_token_id(tokenizer, raw: bool = False) -> int | None:
    """The id generation stops at: the end-of-turn token for chat prompts, else the eos token."""
    if not raw and has_chat_template(tokenizer):
        vocab = tokenizer.get_vocab()
        for token in _END_OF_TURN_TOKENS:
            if token in vocab:
                return int(vocab[token])
    return tokenizer.eos_token_id


def decode_text(tokenizer, ids: Sequence[int]) -> str:
    """Printable text: special tokens (eos, end of turn, padding) removed."""
    return tokenizer.decode(list(ids), skip_special_tokens=True)


def demo_prompt_ids(tokenizer, question: str) -> list[int]:
    """A GSM8K question for a pair: one chat turn if the tokenizer has a template, else the fast test
    pair's training format ``Question: ...\\nAnswer:``."""
    if has_chat_template(tokenizer):
        return encode_prompt(tokenizer, question)
    return list(tokenizer(f"Question: {question.strip()}\nAnswer:")["input_ids"])

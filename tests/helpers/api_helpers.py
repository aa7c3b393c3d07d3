"""Shared by the API tests: the built-in gsm8k pair (named explicitly), references, a client factory."""

from __future__ import annotations

from pathlib import Path

import torch

import gelato

PAIR_DIR = Path(gelato.__file__).resolve().parent / "zoo_data" / "gsm8k"
DRAFT_DIR, TARGET_DIR = PAIR_DIR / "draft", PAIR_DIR / "target"
MODEL = "gsm8k"
PROMPT = "Question: A baker makes 12 cakes a day and sells 9. How many cakes are left after 3 days?\nAnswer:"
CHAT = [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]


def load_test_pair():
    """(draft, target, tokenizer) of the built-in gsm8k pair."""
    from gelato.models.loading import load_pair

    torch.set_num_threads(1)
    return load_pair(DRAFT_DIR, TARGET_DIR)


def target_only_text(pair, prompt_ids: list[int], max_tokens: int) -> tuple[str, int]:
    """The reference: greedy decoding with the target alone; (text, number of tokens)."""
    from gelato.decoding.sampling import SamplingParams
    from gelato.generation import generate_target_only
    from gelato.models.loading import shared_vocab_size

    draft, target, tok = pair
    result = generate_target_only(target, prompt_ids, SamplingParams(), max_tokens, tok.eos_token_id,
                                  vocab_size=shared_vocab_size(draft, target))
    text = tok.decode(result.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return text, len(result.token_ids)


def openai_client(url: str, api_key: str = "unused"):
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=120)

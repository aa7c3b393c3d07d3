"""Chat prompts, end-of-turn stops and clean text; the real default pair end to end (a few tests)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gelato.cli.main import app
from gelato.models import load_tokenizer
from gelato.models.chat import (
    EmptyPromptError,
    decode_text,
    demo_prompt_ids,
    encode_prompt,
    has_chat_template,
    stop_token_id,
)


@pytest.fixture(scope="module")
def chat_tok():
    from gelato.models.fetch import ensure_smollm2

    return load_tokenizer(ensure_smollm2())


def test_chat_template_system_and_raw(chat_tok):
    assert has_chat_template(chat_tok)
    text = chat_tok.decode(encode_prompt(chat_tok, "What is 2+2?"))
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert "You are a helpful" in text  # the template's default system turn
    custom = chat_tok.decode(encode_prompt(chat_tok, "What is 2+2?", system="Answer in French."))
    assert "<|im_start|>system\nAnswer in French.<|im_end|>" in custom and "You are a helpful" not in custom
    assert chat_tok.decode(encode_prompt(chat_tok, "What is 2+2?", raw=True)) == "What is 2+2?"
    with pytest.raises(EmptyPromptError):
        encode_prompt(chat_tok, "")
    with pytest.raises(ValueError, match="--system"):
        encode_prompt(chat_tok, "x", raw=True, system="s")


def test_end_of_turn_stop_and_clean_decoding(chat_tok):
    eot = chat_tok.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_id(chat_tok) == eot
    ids = chat_tok("Paris.", add_special_tokens=False)["input_ids"] + [eot, chat_tok.convert_tokens_to_ids("<|endoftext|>")]
    assert decode_text(chat_tok, ids) == "Paris."


def test_fast_pair_keeps_its_training_format(fast_pair):
    tok = load_tokenizer(fast_pair[1])
    assert not has_chat_template(tok)
    assert stop_token_id(tok) == tok.eos_token_id
    assert tok.decode(demo_prompt_ids(tok, "How many?")).endswith("Question: How many?\nAnswer:")


def _invoke(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.slow
def test_real_pair_answers_paris_and_equals_target_only(use_real_pair):
    outs = []
    for extra in ([], ["--target-only"]):
        res = _invoke("generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "24", "--json",
                      *extra)
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.output.strip().splitlines()[-1]))
    assert "Paris" in outs[0]["text"] and "<|" not in outs[0]["text"]
    assert outs[0]["token_ids"] == outs[1]["token_ids"]
    assert outs[0]["stop_reason"] == "eos"  # stopped at the end of the turn


@pytest.mark.slow
def test_draft_with_another_vocabulary_is_one_line(real_pair, fast_pair):
    res = _invoke("generate", "--draft", fast_pair[0], "--target", real_pair[1], "--prompt", "hi")
    assert res.exit_code == 2
    assert "vocabularies differ" in res.output and "Traceback" not in res.output

"""Incremental detokenisation and stop strings, against the real tokenizer of the built-in pair."""

from __future__ import annotations

import random

import pytest
from api_helpers import TARGET_DIR

from gelato.api.text import IncrementalDetokenizer, StopStringMatcher
from gelato.models.loading import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(TARGET_DIR)


def decode_all(tok, ids):
    return tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("text", ["Answer: 12 + 9 = 21\n#### 21", "héllo wörld — ça va? 日本語 🎂🎂 ok",
                                  "  leading spaces\tand\ttabs  "])
def test_pieces_concatenate_to_the_full_decode(tok, text):
    prompt = tok("Question:")["input_ids"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tok, prompt)
    pieces = [detok.add(t) for t in ids]
    assert "".join(pieces) == decode_all(tok, ids)
    assert not any("\ufffd" in p for p in pieces)  # a split multi-byte character is held back, never sent broken


def test_multibyte_character_split_over_tokens_is_held_back(tok):
    ids = tok("🎂", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # byte-level BPE splits the emoji's 4 bytes over several ids
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.add(t) for t in ids]
    assert pieces[:-1] == [""] * (len(ids) - 1) and pieces[-1] == "🎂"


def test_special_tokens_produce_no_text(tok):
    detok = IncrementalDetokenizer(tok)
    assert detok.add(tok.eos_token_id) == ""


@pytest.mark.parametrize("seed", range(20))
def test_stop_string_found_whatever_the_chunking(seed):
    rng = random.Random(seed)
    text = "The answer is 12. #### 12\nQuestion: next"
    stop = rng.choice(["####", "\nQuestion:", "12.", "is 1"])
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 12)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    matcher = StopStringMatcher([stop, "never"])
    sent = ""
    for chunk in chunks:
        sent += matcher.feed(chunk)
        if matcher.stopped:
            break
    sent += matcher.flush()
    assert matcher.stopped and sent == text[: text.index(stop)]


def test_text_held_for_a_possible_stop_is_released_when_it_is_not_one():
    matcher = StopStringMatcher(["###"])
    assert matcher.feed("ab#") == "ab"  # '#' could start the stop string: held
    assert matcher.feed("#c") == "##c"  # '##c' cannot: released
    assert matcher.feed("x##") == "x"
    assert matcher.flush() == "##" and not matcher.stopped  # generation ended: nothing is lost

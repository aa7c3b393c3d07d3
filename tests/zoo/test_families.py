"""The issue-30 prompt families: all present, deterministic for a seed, within the token limit, and free of
evaluation-set prompts (Spec-Bench, GSM8K test, HumanEval) by exact and near-exact (13-word overlap) match."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from gelato.data.workloads import resolve_data_dir
from gelato.models import load_tokenizer
from gelato.models.chat import encode_messages
from gelato.models.pairs import zoo_data_dir
from gelato.zoo.families import (
    FAMILIES,
    MAX_PROMPT_TOKENS,
    STATIC_FAMILIES,
    build_families,
    family_counts,
    translate_from_prompts,
)

DATA = resolve_data_dir()
pytestmark = [pytest.mark.slow,  # builds the families from the teacher data and scans the evaluation sets
              pytest.mark.skipif(not (DATA / "smollm2-teacher" / "greedy.npz").is_file()
                                 or not (DATA / "spec_bench_question.jsonl").is_file(),
                                 reason="needs ../shared/data (teacher data and the evaluation sets)")]
N = 24


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(zoo_data_dir() / "smollm2" / "draft")  # the target's tokenizer, shipped with the draft


@pytest.fixture(scope="module")
def built(tok):
    return build_families(tok, seed=0, per_family=N, stdlib_chars=4_000_000)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shingles(text: str, n: int = 13) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def eval_texts() -> list[str]:
    texts = [t for line in open(DATA / "spec_bench_question.jsonl") for t in json.loads(line)["turns"]]
    texts += [json.loads(line)["question"] for line in open(DATA / "gsm8k_test.jsonl")]
    with gzip.open(DATA / "HumanEval.jsonl.gz", "rt") as f:
        texts += [json.loads(line)["prompt"] for line in f]
    return texts


def test_every_static_family_present_interleaved_and_in_length(built, tok):
    counts = family_counts(built)
    assert all(counts[f] == N for f in STATIC_FAMILIES), counts
    assert [p.family for p in built[: len(STATIC_FAMILIES)]] == list(STATIC_FAMILIES)  # one of each in turn
    assert len({p.key for p in built}) == len(built)
    assert {p.lang for p in built if p.family == "translate_to"} == {"French", "Spanish", "German"}
    for p in built:
        assert p.messages[-1][0] == "user"
        assert len(encode_messages(tok, p.chat())) <= MAX_PROMPT_TOKENS
    follow = [p for p in built if p.family == "follow_up"]
    assert all([r for r, _ in p.messages] == ["user", "assistant", "user"] for p in follow)


def test_deterministic_for_a_seed(built, tok):
    again = build_families(tok, seed=0, per_family=N, stdlib_chars=4_000_000)
    assert [(p.key, p.messages) for p in again] == [(p.key, p.messages) for p in built]
    other = build_families(tok, seed=1, per_family=N, stdlib_chars=4_000_000)
    assert {p.key for p in other} != {p.key for p in built}


def test_translate_from_uses_real_translations_only(built, tok):
    to = [p for p in built if p.family == "translate_to"]
    fr = next(p for p in to if p.lang == "French")
    de = next(p for p in to if p.lang == "German")
    done = [(fr, "Le chat est sur la table et il dort pour une heure."),
            (de, "This answer is in English, so it is not a translation.")]
    back = translate_from_prompts(done, seed=0, tokenizer=tok)
    assert [(p.family, p.lang, p.source) for p in back] == [("translate_from", "French", "target_translation")]
    assert "Le chat est sur la table" in back[0].messages[-1][1]
    assert translate_from_prompts(list(reversed(done)), seed=0, tokenizer=tok) == back
    assert set(FAMILIES) == set(STATIC_FAMILIES) | {"translate_from"}


def test_no_eval_set_prompt(built):
    evals = eval_texts()
    assert len(evals) == 480 + 80 + 1319 + 164
    norm = [" ".join(_words(t)) for t in evals]
    eval_shingles = set().union(*(_shingles(t) for t in evals))
    for p in built:
        for _, text in p.messages:
            flat = " ".join(_words(text))
            assert not any(e and len(e) > 40 and e in flat for e in norm), (p.key, text[:200])
            shared = _shingles(text) & eval_shingles
            assert not shared, (p.key, sorted(shared)[:2])

"""A draft with an output layer limited to listed tokens; the shift-reusing trace recorder; draft distillation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gelato.decoding.sampling import SamplingParams, processed_probs
from gelato.experiments.trace import record_trace
from gelato.experiments.trace_fast import record_trace_fast
from gelato.generation import generate_speculative, generate_target_only
from gelato.models import load_causal_lm
from gelato.models.output_subset import FILL, apply_output_subset, read_output_tokens, write_output_tokens
from gelato.models.tiny import noisy_copy, tiny_llama
from gelato.policies import StaticPolicy
from tests.conftest import random_prompts

LISTED = list(range(0, 64, 2)) + [5, 7]


def test_subset_head_keeps_listed_logits_and_zeroes_the_rest():
    model = tiny_llama(vocab_size=64, seed=3)
    x = torch.tensor([[1, 2, 3, 4]])
    full = model(input_ids=x).logits
    apply_output_subset(model, LISTED)
    limited = model(input_ids=x).logits
    assert limited.shape == full.shape
    assert torch.allclose(limited[..., LISTED], full[..., LISTED], atol=1e-5)
    others = [i for i in range(64) if i not in LISTED]
    assert (limited[..., others] == FILL).all()
    q = processed_probs(limited[0, -1], SamplingParams(temperature=1.0))
    assert float(q[others].sum()) == 0.0 and abs(float(q.sum()) - 1) < 1e-5
    assert int(limited[0, -1].argmax()) == LISTED[int(full[0, -1, LISTED].argmax())]


def test_saved_list_is_applied_on_load_and_decoding_stays_lossless(tmp_path):
    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.15, seed=1)
    draft.save_pretrained(tmp_path)
    write_output_tokens(tmp_path, LISTED)
    assert read_output_tokens(tmp_path) == sorted(LISTED)
    loaded = load_causal_lm(tmp_path)
    assert type(loaded.lm_head).__name__ == "SubsetLMHead"
    for prompt in random_prompts(3, seed=4, min_len=3):
        ref = generate_target_only(target, prompt, SamplingParams(), 20)
        ours = generate_speculative(loaded, target, prompt, SamplingParams(), StaticPolicy(3), 20)
        assert ours.token_ids == ref.token_ids


def test_fast_trace_recorder_equals_the_reference_recorder():
    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.1, seed=2)
    prompts = [(f"p{i}", p) for i, p in enumerate(random_prompts(3, seed=8, min_len=3))]
    a = record_trace(draft, target, prompts, k_max=5, max_new_tokens=24)
    b = record_trace_fast(draft, target, prompts, k_max=5, max_new_tokens=24)
    for pa, pb in zip(a.prompts, b.prompts):
        assert (pa.target_tokens == pb.target_tokens).all() and (pa.draft_tokens == pb.draft_tokens).all()
        assert (pa.topp_support == pb.topp_support).all()
        assert np.allclose(pa.entropies, pb.entropies, atol=1e-5)
        assert np.allclose(pa.token_probs, pb.token_probs, atol=1e-6)


def _teacher_sequences(n: int, seed: int, source: str = "queries"):
    from gelato.zoo.teacher import TeacherSequence

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start = int(rng.integers(1, 60))
        answer = (start + np.arange(12)) % 60 + 2  # a counting pattern a tiny draft can learn
        out.append(TeacherSequence(rng.integers(2, 62, 5).astype(np.int64), answer.astype(np.int64), source, False))
    return out


@pytest.mark.slow  # trains a draft
def test_draft_distillation_learns_and_resumes_from_its_checkpoint(tmp_path):
    from gelato.zoo.draft_distill import DraftRecipe, TargetFacts, make_draft, train_draft
    from gelato.zoo.teacher import output_support

    train, held = _teacher_sequences(24, 0), _teacher_sequences(4, 1)
    support = output_support(train, (0,))
    facts = TargetFacts(vocab_size=64, bos_token_id=1, eos_token_id=0, pad_token_id=0, max_position_embeddings=64)
    recipe = DraftRecipe(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=64, batch_tokens=96, warmup_steps=2, lr=1e-2, checkpoint_seconds=0.0,
                         eval_seconds=0.5, max_len=64)
    ck = tmp_path / "ck.pt"
    first = train_draft(make_draft(recipe, facts, 0), train, held, support, recipe, budget_seconds=1.5, seed=0,
                        checkpoint=ck, log=lambda s: None)
    assert ck.is_file() and first["step"] > 0 and first["evals"]
    again = make_draft(recipe, facts, 0)
    resumed = train_draft(again, train, held, support, recipe, budget_seconds=4.0, seed=0, checkpoint=ck,
                          log=lambda s: None)
    assert resumed["step"] > first["step"] and resumed["losses"][:first["step"]] == first["losses"]
    assert np.mean(resumed["losses"][-3:]) < np.mean(resumed["losses"][:3])
    best = resumed["best"]["mean_acceptance_length"]["4"]
    assert best == max(e["mean_acceptance_length"]["4"] for e in resumed["evals"])
    assert best > resumed["evals"][0]["mean_acceptance_length"]["4"] or best > 2.0  # it learned the pattern


def test_acceptance_lengths_along_a_greedy_path_match_the_trace_replay():
    from gelato.zoo.teacher import acceptance_lengths

    # matches: the draft is right at positions 0-2 and 4, wrong at 3, right at 5-9 (10 tokens)
    m = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
    got = acceptance_lengths(m, ks=(2, 4))
    # K=2: [0,1]+1 -> s=3; [3 wrong]+1 -> s=4; [4,5]+1 -> s=7; [7,8]+1 -> s=10 : 10 tokens in 4 rounds
    assert got["2"] == (10, 4)
    # K=4: [0,1,2] then 3 wrong -> 4 tokens, s=4; [4..7]+1 -> s=9; last token is the target's -> s=10
    assert got["4"] == (10, 3)


def test_teacher_split_holds_queries_out_by_prompt_hash(tmp_path):
    from gelato.zoo.teacher import GREEDY_FILE, SAMPLED_FILE, is_held_out, load_teacher, output_support

    seqs = _teacher_sequences(200, 3)
    def write(path, items):
        np.savez(path, prompt_ids=np.concatenate([s.prompt for s in items]).astype(np.uint16),
                 prompt_len=np.array([len(s.prompt) for s in items], dtype=np.int32),
                 answer_ids=np.concatenate([s.answer for s in items]).astype(np.uint16),
                 answer_len=np.array([len(s.answer) for s in items], dtype=np.int32),
                 source=np.array([s.source for s in items]), finished=np.ones(len(items), dtype=bool))
    write(tmp_path / GREEDY_FILE, seqs)
    write(tmp_path / SAMPLED_FILE, seqs[:50])
    train, held = load_teacher(tmp_path)
    assert held and all(is_held_out(s) for s in held)
    held_prompts = {s.prompt.tobytes() for s in held}
    assert not any(s.prompt.tobytes() in held_prompts for s in train)  # sampled answers to held prompts too
    assert len(train) + len(held) + sum(is_held_out(s) for s in seqs[:50]) == 250
    support = set(output_support(train).tolist())
    assert all(set(s.answer.tolist()) <= support for s in train)


def test_held_out_scores_equal_a_real_speculative_run_along_the_target_path():
    from gelato.zoo.draft_report import score_paths

    target = tiny_llama(vocab_size=64, seed=0)
    draft = noisy_copy(target, 0.2, seed=5)
    prompts = random_prompts(3, seed=11, min_len=4)
    paths = [(list(p), generate_target_only(target, p, SamplingParams(), 24).token_ids) for p in prompts]
    got = score_paths({"d": draft, "same": target}, target, paths, ks=(2, 4))
    assert got["same"]["top1_agreement"] == 1.0 and abs(got["same"]["acceptance_rate_t1"] - 1) < 1e-5
    got = got["d"]
    for k in (2, 4):
        tokens = rounds = 0
        for p, answer in paths:
            run = generate_speculative(draft, target, p, SamplingParams(), StaticPolicy(k), len(answer))
            assert run.token_ids == answer
            tokens, rounds = tokens + len(answer), rounds + run.metrics.rounds
        assert got["mean_acceptance_length"][str(k)] == round(tokens / rounds, 3)
    assert 0.0 < got["acceptance_rate_t1"] <= 1.0 and got["positions"] == sum(len(a) for _, a in paths)

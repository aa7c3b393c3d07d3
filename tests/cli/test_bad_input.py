"""Bad input gets a clear error naming the problem."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from gelato.decoding.sampling import SamplingParams
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.models import CachedCausalLM, ModelLoadError, VocabularyMismatchError, load_causal_lm, load_pair
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy


def save_model_dir(path, vocab: dict[str, int], seed: int):
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(path)
    tiny_llama(vocab_size=len(vocab), seed=seed).save_pretrained(path)
    return path


def vocab_of(words):
    return {w: i for i, w in enumerate(["<unk>", "<eos>", *words])}


def test_mismatched_vocabularies_name_the_difference(tmp_path):
    draft = save_model_dir(tmp_path / "draft", vocab_of(["a", "b", "c"]), seed=1)
    target = save_model_dir(tmp_path / "target", vocab_of(["a", "c", "b"]), seed=2)
    with pytest.raises(VocabularyMismatchError) as err:
        load_pair(draft, target)
    message = str(err.value)
    assert "'b': draft id 3 vs target id 4" in message and "'c': draft id 4 vs target id 3" in message


def test_different_vocabulary_sizes_are_reported(tmp_path):
    draft = save_model_dir(tmp_path / "draft", vocab_of(["a", "b"]), seed=1)
    target = save_model_dir(tmp_path / "target", vocab_of(["a", "b", "c"]), seed=2)
    with pytest.raises(VocabularyMismatchError, match="tokenizer sizes differ: draft 4 vs target 5"):
        load_pair(draft, target)


def test_matching_pair_loads(tmp_path):
    words = ["a", "b", "c"]
    draft, target, tok = load_pair(save_model_dir(tmp_path / "d", vocab_of(words), 1),
                                   save_model_dir(tmp_path / "t", vocab_of(words), 2))
    assert tok.convert_tokens_to_ids("b") == 3 and draft.config.vocab_size == target.config.vocab_size


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="model directory not found: .*nowhere"):
        load_causal_lm(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_causal_lm(tmp_path / "empty")


def engine(tiny_target):
    params = SamplingParams()
    return (DraftModelProposer(CachedCausalLM(tiny_target), params),
            TargetModelVerifier(CachedCausalLM(tiny_target), params))


def test_empty_prompt(tiny_target):
    proposer, verifier = engine(tiny_target)
    with pytest.raises(ValueError, match="prompt is empty"):
        generate([], proposer, verifier, StaticPolicy(2), 5)


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one(k):
    with pytest.raises(ValueError, match="K must be >= 1"):
        StaticPolicy(k)


def test_out_of_vocabulary_prompt(tiny_target):
    proposer, verifier = engine(tiny_target)
    with pytest.raises(ValueError, match="outside the model's vocabulary of 64"):
        generate([1, 999], proposer, verifier, StaticPolicy(2), 5)

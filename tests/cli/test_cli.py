"""The ``gelato generate`` command on a pair saved to disk in standard Hugging Face format."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from gelato.cli.main import app
from gelato.models.tiny import noisy_copy, tiny_llama

WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    target = tiny_llama(vocab_size=len(vocab), seed=0)
    for name, model in (("target", target), ("draft", noisy_copy(target, 0.15, seed=1))):
        fast.save_pretrained(root / name)
        model.save_pretrained(root / name)
    return root / "draft", root / "target"


def invoke(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.parametrize("extra", [[], ["--temperature", "0", "--top-k", "5"]])
def test_generate_json_equals_target_only(pair_dirs, extra):
    draft, target = pair_dirs
    common = ["generate", "--draft", draft, "--target", target, "--prompt", "w1 w2 w3", "--max-new-tokens", 30,
              "--json", *extra]
    sd = invoke(*common, "-k", 4)
    ref = invoke(*common, "--target-only")
    assert sd.exit_code == 0, sd.output
    assert ref.exit_code == 0, ref.output
    sd_out, ref_out = json.loads(sd.stdout), json.loads(ref.stdout)
    assert sd_out["token_ids"] == ref_out["token_ids"] and len(sd_out["token_ids"]) > 0
    assert sd_out["text"] == ref_out["text"]
    assert sd_out["metrics"]["rounds"] < len(sd_out["token_ids"])  # the draft did help
    assert {"mean_acceptance_length", "draft_acceptance_rate", "acceptance_per_position"} <= set(sd_out["metrics"])


@pytest.mark.parametrize("policy", [[], ["--policy", "static-4"]])
def test_generate_streams_the_text_then_its_figures(pair_dirs, policy):
    """Without --json the text is printed as rounds commit (the same text as --json) and a summary follows:
    time to first token, tok/s and acceptance; the default policy is GELATO."""
    draft, target = pair_dirs
    common = ["generate", "--draft", draft, "--target", target, "--prompt", "w1 w2 w3", "--max-new-tokens", 30,
              *policy]
    streamed, ref = invoke(*common), invoke(*common, "--json")
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.strip() == json.loads(ref.stdout)["text"].strip() != ""
    summary = streamed.stderr
    assert "time to first token" in summary and "tok/s" in summary and "acceptance" in summary
    assert (policy[-1] if policy else "gelato-improved") in summary


def test_generate_sampling_runs_and_is_seeded(pair_dirs):
    draft, target = pair_dirs
    args = ["generate", "--draft", draft, "--target", target, "--prompt", "w5", "--max-new-tokens", 20,
            "--temperature", "1.0", "--top-p", "0.9", "--json", "--seed", 3]
    first, second = invoke(*args), invoke(*args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["token_ids"] == json.loads(second.stdout)["token_ids"]


@pytest.mark.parametrize("args,message", [
    (["--prompt", ""], "prompt is empty"),
    (["--prompt", "   "], "prompt is empty (only spaces)"),
    (["--prompt", "w1", "-k", "0"], "--num-draft-tokens must be >= 1"),
    (["--prompt", "w1", "--policy", "static:4"], "spelled static-K, e.g. static-4"),
    (["--prompt", "w1", "--policy", "edge-autoregressive", "-k", "3"], "has no draft length"),
    (["--prompt", "w1", "--top-p", "2"], "top_p must be in (0, 1]"),
])
def test_generate_bad_input(pair_dirs, args, message):
    draft, target = pair_dirs
    result = invoke("generate", "--draft", draft, "--target", target, *args)
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.slow  # runs the CLI in a subprocess
def test_missing_model_directory_via_console_script(tmp_path, pair_dirs):
    proc = subprocess.run([sys.executable, "-m", "gelato.cli.main", "generate", "--draft", str(tmp_path / "nope"),
                           "--target", str(pair_dirs[1]), "--prompt", "w1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "directory not found" in proc.stderr and "nope" in proc.stderr


def test_version():
    from gelato import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"gelato {__version__}"

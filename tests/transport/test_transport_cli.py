"""The commands end to end: ``serve`` and ``link`` as real processes, ``device`` against them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from edge_helpers import VOCAB, reference
from gelato.cli.transport_cmd import app, make_policy


def _save_with_tokenizer(model, path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    model.save_pretrained(path)
    vocab = {f"w{i}": i for i in range(VOCAB - 1)} | {"<eos>": VOCAB - 1}
    tok = Tokenizer(WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="w0").save_pretrained(path)


def _spawn(args, pattern):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "gelato.cli.transport_cmd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        match = re.search(pattern, line)
        if match:
            return proc, match
    proc.kill()
    raise AssertionError(f"{args[0]} did not start")


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dirs(pair, tmp_path_factory):
    target, draft = pair
    root = tmp_path_factory.mktemp("models")
    _save_with_tokenizer(target, root / "target")
    _save_with_tokenizer(draft, root / "draft")
    return root / "target", root / "draft"


def test_serve_link_device_end_to_end(pair, model_dirs, tmp_path):
    target, _ = pair
    target_dir, draft_dir = model_dirs
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("phone:s3cret\n")
    edge, match = _spawn(["serve", "--target", str(target_dir), "--port", "0", "--tokens-file", str(tokens), "--threads", "1",
                          "--log-level", "warning"], r"edge listening on ([\d.]+):(\d+)")
    edge_port = int(match.group(2))
    listen = _free_port()
    link, _ = _spawn(["link", "--listen", str(listen), "--upstream", f"127.0.0.1:{edge_port}", "--bandwidth-mhz",
                      "2", "--delay-ms", "1", "--report-every", "0.5"], r"link listening")
    runner = CliRunner()
    try:
        out = tmp_path / "run.json"
        prompt = "w3 w17 w42 w5 w8"
        result = runner.invoke(app, ["device", "--edge", f"127.0.0.1:{listen}", "--draft", str(draft_dir),
                                     "--prompt", prompt, "--max-new-tokens", "16", "--policy", "static:3",
                                     "--token", "s3cret", "--json", str(out)])
        assert result.exit_code == 0, result.output
        run = json.loads(out.read_text())
        expected = reference(target, [3, 17, 42, 5, 8], 16)
        eos = VOCAB - 1
        if eos in expected:
            expected = expected[: expected.index(eos) + 1]
        assert run["token_ids"] == expected
        assert "network + gRPC" in result.output and run["network"]["rounds"] == run["metrics"]["rounds"]
        # direct to the edge, with prompt ids and a wrong token: a clear refusal, exit code 1
        bad = runner.invoke(app, ["device", "--edge", f"127.0.0.1:{edge_port}", "--draft", str(draft_dir),
                                  "--prompt-ids", "3,17,42", "--max-new-tokens", "4", "--token", "nope"])
        assert bad.exit_code == 1 and "UNAUTHENTICATED" in bad.output
    finally:
        _stop(link)
        _stop(edge)
        link_out = link.stdout.read()
    assert re.search(r"link: up \d+ B", link_out)


def test_make_policy_names():
    assert make_policy("static:5").k == 5 and make_policy("static-k2").k == 2
    assert make_policy("gelato-paper").name.startswith("gelato")
    import typer
    with pytest.raises(typer.BadParameter):
        make_policy("nonsense")

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
import typer
from edge_helpers import VOCAB, reference
from typer.testing import CliRunner

from gelato.cli.common import make_policy_or_fail
from gelato.cli.main import app
from gelato.policies.registry import DEFAULT_POLICY


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
    proc = subprocess.Popen([sys.executable, "-m", "gelato.cli.main", *args], stdout=subprocess.PIPE,
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


@pytest.mark.slow  # starts serve, link and device processes
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
                                     "--prompt", prompt, "--max-new-tokens", "40", "--policy", "static-40",
                                     "--token", "s3cret", "--json", str(out)])
        assert result.exit_code == 0, result.output
        run = json.loads(out.read_text())
        expected = reference(target, [3, 17, 42, 5, 8], 40)
        eos = VOCAB - 1
        if eos in expected:
            expected = expected[: expected.index(eos) + 1]
        assert run["token_ids"] == expected
        assert "network + gRPC" in result.output and run["network"]["rounds"] == run["metrics"]["rounds"]
        # piped output: the text is one line, not hard-wrapped at 80 columns; static-40 was capped to the
        # edge's 32 draft tokens per round instead of being refused
        assert len(run["text"]) > 80 and run["text"] in result.output.splitlines()
        assert run["policy"] == "static-40" and "planner" not in run  # a policy that does not plan
        # the default policy plans with what this run measured: its planner saw every round and fitted
        planned = runner.invoke(app, ["device", "--edge", f"127.0.0.1:{listen}", "--draft", str(draft_dir),
                                      "--prompt", prompt, "--max-new-tokens", "40", "--token", "s3cret",
                                      "--json", str(out)])
        assert planned.exit_code == 0, planned.output
        run = json.loads(out.read_text())
        assert run["token_ids"] == expected
        assert run["planner"]["rounds"] == run["metrics"]["rounds"] >= 3 and run["planner"]["fitted"]
        # direct to the edge, with prompt ids and a wrong token: a clear refusal, exit code 1
        bad = runner.invoke(app, ["device", "--edge", f"127.0.0.1:{edge_port}", "--draft", str(draft_dir),
                                  "--prompt-ids", "3,17,42", "--max-new-tokens", "4", "--token", "nope"])
        assert bad.exit_code == 1 and "UNAUTHENTICATED" in bad.output
    finally:
        _stop(link)
        _stop(edge)
        link_out = link.stdout.read()
    assert re.search(r"link: up \d+ B", link_out)


def test_policy_names_come_from_the_registry(capsys):
    assert make_policy_or_fail("static-5").k == 5 and make_policy_or_fail("static-2").k == 2
    assert make_policy_or_fail("static-5", 3).k == 3 and make_policy_or_fail("gelato-paper", 6).config.g_max == 6
    assert make_policy_or_fail(DEFAULT_POLICY).name.startswith("gelato-improved")
    assert make_policy_or_fail("gelato-paper").name.startswith("gelato")
    assert type(make_policy_or_fail("gelato-paper").predictor).__name__ == "ModelledClock"  # gelato generate
    assert type(make_policy_or_fail("gelato-paper", measured=True).predictor).__name__ == "MeasuredPlanner"
    for bad, why in (("nonsense", "unknown policy"), ("hf-heuristic", "has no draft length")):
        with pytest.raises(typer.Exit):
            make_policy_or_fail(bad, 4 if bad.startswith("hf") else None)
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1


def _one_clear_line(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


DEVICE = ["device", "--edge", "127.0.0.1:1", "--prompt-ids", "1,2", "--fingerprint", "synthetic:96"]


@pytest.mark.parametrize("args, needle", [
    (["--tls-ca", "/nonexistent/ca.pem"], "ca.pem"),
    (["--payload", "bogus"], "payload"),
    (["--temperature", "-1"], "temperature"),
    (["--top-p", "0"], "top_p"),
    (["--prompt-ids", "1,x"], "'x'"),
    (["--prompt-ids", "1,-3"], "'-3'"),
    (["--fingerprint", "synthetic:abc"], "synthetic:N"),
    (["--policy", "nonsense"], "unknown policy"),
])
def test_device_bad_arguments_give_one_line(args, needle):
    _one_clear_line(CliRunner().invoke(app, DEVICE + args), needle)


def test_serve_and_link_bad_arguments_give_one_line(model_dirs, tmp_path):
    target_dir, _ = model_dirs
    runner = CliRunner()
    serve = ["serve", "--target", str(target_dir), "--threads", "1", "--log-level", "error"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _one_clear_line(runner.invoke(app, serve + ["--port", str(port)]), "could not bind")
        _one_clear_line(runner.invoke(app, ["link", "--listen", str(port), "--upstream", "127.0.0.1:50051"]),
                        "link:")
    _one_clear_line(runner.invoke(app, serve + ["--host", "no-such-host.invalid", "--port", "0"]), "could not bind")
    _one_clear_line(runner.invoke(app, ["serve", "--target", str(tmp_path / "missing")]), "missing")
    (tmp_path / "bad.pem").write_text("not a certificate")
    _one_clear_line(runner.invoke(app, serve + ["--tls-cert", str(tmp_path / "bad.pem"), "--tls-key",
                                                str(tmp_path / "bad.pem")]), "TLS")
    from edge_helpers import self_signed_certificate
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    self_signed_certificate(tmp_path / "a")
    self_signed_certificate(tmp_path / "b")
    _one_clear_line(runner.invoke(app, serve + ["--tls-cert", str(tmp_path / "a" / "edge.crt"), "--tls-key",
                                                str(tmp_path / "b" / "edge.key")]), "do not belong together")
    _one_clear_line(runner.invoke(app, ["link", "--listen", "0", "--upstream", "nonsense"]), "HOST:PORT")
    listening = runner.invoke(app, ["link", "--listen", "0", "--upstream", "nonsense"])
    assert "listening" not in listening.output


def _clear_refusal(result, needle):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert needle in result.output, result.output


@pytest.mark.parametrize("args, needle", [
    (["--max-new-tokens", "-5"], "--max-new-tokens"),
    (["--seed", "18446744073709551615"], "--seed"),
    (["--rpc-timeout", "0"], "--rpc-timeout"),
    (["--unreachable-after", "-1"], "--unreachable-after"),
    (["--threads", "-1"], "--threads"),
    (["--json", "/nonexistent/dir/run.json"], "cannot write --json"),
])
def test_device_out_of_range_values_give_one_clear_refusal(args, needle):
    _clear_refusal(CliRunner().invoke(app, DEVICE + args), needle)


@pytest.mark.parametrize("args, needle", [
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--kv-memory", "lots"], "--kv-memory"),
    (["link", "--listen", "70000", "--upstream", "127.0.0.1:1"], "--listen"),
    (["link", "--listen", "7000", "--upstream", "127.0.0.1:1", "--report-every", "0"], "--report-every"),
])
def test_serve_and_link_out_of_range_values_give_one_clear_refusal(args, needle):
    _clear_refusal(CliRunner().invoke(app, args), needle)


def test_bad_gelato_threads_gives_one_clear_refusal():
    from gelato.cli.main import app as main_app
    result = CliRunner().invoke(main_app, ["policies"], env={"GELATO_THREADS": "abc"})
    _clear_refusal(result, "GELATO_THREADS")

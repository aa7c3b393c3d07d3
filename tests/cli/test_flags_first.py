"""Every flag is checked before a model loads, with one ``error:`` line that names it (issue 28, items 5-8).

The model directories here do not exist (or hold only a config.json), so a check that came after loading
would fail with a model-directory error instead of the flag's own line: each test fails if its check moves
back behind the load. Nothing here loads a model.
"""

from __future__ import annotations

import json
import shutil
import socket

import click
import pytest
import torch
from typer.main import get_command
from typer.testing import CliRunner

from gelato.api.errors import APIError
from gelato.api.schemas import ChatCompletionRequest, parse_request
from gelato.cli.main import app


def invoke(*args, columns: int = 200):
    return CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": str(columns)}, terminal_width=columns)


def one_error(result, *needles: str) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def missing(tmp_path):
    return tmp_path / "no-draft", tmp_path / "no-target"


# ---------------------------------------------------------------------------------------------- item 5

def test_empty_prompt_before_the_models(missing):
    one_error(invoke("generate", "--draft", missing[0], "--target", missing[1], "--prompt", "  "),
              "the prompt is empty")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
@pytest.mark.parametrize("command", [["generate", "--prompt", "hi"], ["api", "--port", "0"]])
def test_cuda_without_cuda_before_the_models(missing, command):
    one_error(invoke(*command, "--draft", missing[0], "--target", missing[1], "--device", "cuda"),
              "--device cuda", "CUDA is not available")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_serve_cuda_without_cuda_before_the_model(missing):
    one_error(invoke("serve", "--target", missing[1], "--port", "0", "--device", "cuda"), "--device cuda")


def test_bad_dtype_before_the_models(missing):
    one_error(invoke("generate", "--draft", missing[0], "--target", missing[1], "--prompt", "hi", "--dtype", "f8"),
              "--dtype", "unknown dtype 'f8'")


def test_busy_metrics_port_before_the_model(missing):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_error(invoke("serve", "--target", missing[1], "--port", "0", "--metrics-port", port),
                  "--metrics-port", f"127.0.0.1:{port}")


# ---------------------------------------------------------------------------------------------- item 6

def test_api_edge_tls_ca_must_be_pem(missing, tmp_path):
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello\n")
    one_error(invoke("api", "--port", "0", "--edge", "127.0.0.1:1", "--edge-tls-ca", not_pem, "--draft", missing[0]),
              "--edge-tls-ca", "not a PEM file")


def test_kv_memory_beyond_the_machine(missing):
    one_error(invoke("serve", "--target", missing[1], "--port", "0", "--kv-memory", "99999TiB"),
              "--kv-memory", "more than")


def test_max_new_tokens_beyond_the_context(tmp_path, fast_pair):
    """A target directory with only its config.json: the check reads the context length, loads nothing."""
    target = tmp_path / "target"
    target.mkdir()
    shutil.copy(fast_pair[1] / "config.json", target / "config.json")
    window = json.loads((target / "config.json").read_text())["max_position_embeddings"]
    one_error(invoke("generate", "--draft", tmp_path / "target", "--target", target, "--prompt", "hi",
                     "--max-new-tokens", 100000), "--max-new-tokens 100000", f"context of {window} tokens")


@pytest.mark.parametrize("content", ["", "   ", [{"type": "text", "text": ""}]])
def test_api_refuses_an_empty_user_message_as_the_cli_does(content):
    body = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]}
    with pytest.raises(APIError) as err:
        parse_request(body, ChatCompletionRequest)
    assert err.value.status == 400 and "messages[1] is empty" in err.value.message
    assert err.value.param == "messages[1].content"


def test_api_keeps_an_empty_assistant_turn():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""},
                                       {"role": "user", "content": "again"}]}
    assert len(parse_request(body, ChatCompletionRequest).messages) == 3


# ---------------------------------------------------------------------------------------------- item 7

def test_target_alone_with_a_wrong_path_names_the_path(missing):
    one_error(invoke("generate", "--target", missing[1], "--prompt", "hi"), "--target", str(missing[1]),
              "not found")


@pytest.mark.parametrize("command", [["generate", "--prompt", "hi", "--target", "TARGET"],
                                     ["api", "--port", "0", "--edge", "127.0.0.1:1"],
                                     ["device", "--prompt", "hi"]])
def test_missing_draft_directory_is_named_as_the_draft(missing, fast_pair, command):
    command = [str(fast_pair[1]) if a == "TARGET" else a for a in command]
    line = one_error(invoke(*command, "--draft", missing[0]), "--draft", "model directory not found", str(missing[0]))
    assert "tokenizer" not in line


def test_cluster_help_names_the_extra():
    assert ".[cluster]" in invoke("--help").output
    assert ".[cluster]" in invoke("cluster", "--help").output


def _commands(group: click.Group, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_help_at_80_columns_shows_every_option_name_whole():
    for path, cmd in _commands(get_command(app)):
        result = invoke(*path, "--help", columns=80)
        assert result.exit_code == 0, (path, result.output)
        assert "…" not in result.output, (path, result.output)
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt in result.output, (path, opt)


# ---------------------------------------------------------------------------------------------- item 8

def test_policies_says_any_static_k_works():
    out = invoke("policies").output
    assert "static-K" in out and "any fixed K >= 1" in out


def test_readme_gives_python_venv_test_time_and_the_api_baseline():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "Python >= 3.11" in readme and "-m venv" in readme
    assert re.search(r"about \d+ minutes", readme)  # the whole suite's time, beside the fast lane's
    assert "--policy edge-streaming" in readme and "no-speculation baseline" in readme
    assert "any\n`static-K`" in readme or "any `static-K`" in readme

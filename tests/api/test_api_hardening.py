"""Issue 19's API hardening: each test failed before its fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from api_helpers import MODEL, PROMPT, openai_client, target_only_text
from typer.testing import CliRunner

from gelato.api.backend import Backend, EdgeSettings
from gelato.api.respond import Limits
from gelato.api.server import ApiServerThread
from gelato.api.speculative import Speculation

pytestmark = pytest.mark.slow  # starts the API server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transport"))


def test_api_reaches_a_tls_edge(pair, tmp_path):
    """``api --edge`` over TLS (--edge-tls-ca, --edge-server-name): the API-to-edge hop and its token are no
    longer plaintext only; the text is the target's."""
    from edge_helpers import self_signed_certificate

    from gelato.edge.process import EdgeServerThread
    from gelato.edge.server import EdgeConfig, EdgeServer
    from gelato.wire.fingerprint import tokenizer_fingerprint

    draft, target, tok = pair
    cert, key = self_signed_certificate(tmp_path)
    edge = EdgeServerThread(EdgeServer(target, fingerprint=tokenizer_fingerprint(tok), config=EdgeConfig(
        tls_cert_chain=cert, tls_private_key=key, grace_s=0.1, tokens={"s3cret": "api"})))
    edge.start()
    try:
        settings = EdgeSettings(edge.address, "s3cret", unreachable_after=5.0, tls=True, tls_ca=cert,
                                server_name="localhost")
        backend = Backend(draft, tok, edge=settings, model_name=MODEL)
        with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), Limits()) as srv:
            text = openai_client(srv.url).completions.create(model=MODEL, prompt=PROMPT, max_tokens=12,
                                                               temperature=0).choices[0].text
        assert text == target_only_text(pair, list(tok(PROMPT)["input_ids"]), 12)[0]
    finally:
        edge.stop()


def _one_line(result, needle):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("rror") >= 1, result.output
    assert needle in result.output, result.output


@pytest.mark.parametrize("args, needle", [
    (["--edge", "nonsense"], "HOST:PORT"),
    (["--edge", "127.0.0.1:1", "--edge-tls-ca", "/nonexistent/ca.pem"], "ca.pem"),
    (["--port", "70000"], "65535"),
])
def test_api_bad_arguments_give_one_line(args, needle):
    from gelato.cli.main import app
    _one_line(CliRunner().invoke(app, ["api", *args]), needle)


def test_api_on_a_busy_port_gives_one_line():
    import socket

    from gelato.cli.main import app
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        _one_line(CliRunner().invoke(app, ["api", "--port", str(port), "--edge", "127.0.0.1:1"]), "could not bind")


@pytest.fixture(scope="module")
def local_server(pair):
    draft, target, tok = pair
    backend = Backend(draft, tok, target=target, model_name=MODEL)
    with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), Limits(max_tokens=4096)) as srv:
        yield srv


def _post(server, path: str, body) -> "httpx.Response":
    import json

    import httpx
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=raw, headers={"content-type": "application/json"}, timeout=60)


@pytest.mark.parametrize("extra, words", [
    ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": "8"}, "max_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"prompt": [True]}, "prompt"),
    ({"temperature": 1e-5}, "too small"),
    ({"prompt": "a\udc80b"}, "lone surrogate"),
    ({"speculative": {"e_bar": float("inf")}}, "finite"),
])
def test_bad_client_input_is_a_400_naming_it(local_server, extra, words):
    """Lax types, a temperature the edge would refuse, a lone surrogate and Infinity: each used to be accepted
    (and some failed later with a 500); now a 400 naming the field, on a connection that stays usable."""
    import json
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, **extra}
    r = _post(local_server, "/v1/completions", json.dumps(body, allow_nan=True))
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]


def test_deeply_nested_json_and_a_lone_surrogate_in_a_message_are_400s(local_server):
    r = _post(local_server, "/v1/completions", "[" * 100_000 + "]" * 100_000)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi \udcff"}], "max_tokens": 4}
    import json
    r = _post(local_server, "/v1/chat/completions", json.dumps(body))
    assert r.status_code == 400 and "messages[0].content" in r.json()["error"]["message"]


def test_a_prompt_filling_the_context_says_so(local_server, pair):
    _, target, tok = pair
    context = int(target.config.max_position_embeddings)
    r = _post(local_server, "/v1/completions", {"model": MODEL, "prompt": [i % 1000 + 5 for i in range(context + 40)],
                                                 "max_tokens": 8})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "shorten it" in message and "-" not in message.split("tokens")[1]


def test_abandoned_requests_prefills_are_dropped_and_count_until_they_end(pair):
    """Clients that give up on long prompts at once: the edge opens they started are cancelled (their prefills
    dropped: no session completes its open), and /health counts them as in flight until their worker is done
    (they used to be released at once while 40 prefills ran on, unseen by --max-concurrent)."""
    import time

    import httpx

    from gelato.device.edge_client import EdgeClient
    from gelato.edge.process import EdgeServerThread
    from gelato.edge.server import EdgeConfig, EdgeServer
    from gelato.wire.fingerprint import tokenizer_fingerprint

    draft, target, tok = pair
    edge = EdgeServerThread(EdgeServer(target, fingerprint=tokenizer_fingerprint(tok),
                                       config=EdgeConfig(prefill_chunk=1, grace_s=0.1)))
    edge.start()
    try:
        backend = Backend(draft, tok, edge=EdgeSettings(edge.address, unreachable_after=30.0), model_name=MODEL)
        with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), Limits(max_concurrent=2)) as srv:
            body = {"model": MODEL, "prompt": [i % 500 + 10 for i in range(1900)], "max_tokens": 4}
            for _ in range(4):
                with pytest.raises(httpx.TimeoutException):
                    httpx.post(srv.url + "/v1/completions", json=body, timeout=0.3)
            deadline = time.monotonic() + 60
            while httpx.get(srv.url + "/health").json()["requests_in_flight"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert httpx.get(srv.url + "/health").json()["requests_in_flight"] == 0
        with EdgeClient(edge.address) as c:
            deadline = time.monotonic() + 30
            while (m := c.metrics())["prefilling"] and time.monotonic() < deadline:
                time.sleep(0.1)
        assert m["sessions"]["opened"] == 0 and m["prefilling"] == 0 and m["kv_held_slots"] == 0
    finally:
        edge.stop()

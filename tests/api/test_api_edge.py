"""The server verifying through a real ``gelato serve`` edge (a separate process) over gRPC.

Greedy text equals the target alone; a client that disconnects mid-stream cancels its generation and
closes its edge session; an edge that dies mid-stream ends that stream with an error event while the
API server keeps serving.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from api_helpers import MODEL, PROMPT, TARGET_DIR, openai_client, target_only_text

from gelato.api.backend import Backend, EdgeSettings
from gelato.api.respond import Limits
from gelato.api.server import ApiServerThread
from gelato.api.speculative import Speculation
from gelato.device.client import EdgeClient

pytestmark = pytest.mark.slow  # starts an edge server process and the API server


def spawn_edge():
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "gelato.cli.main", "serve", "--port", "0", "--target",
                             str(TARGET_DIR), "--batch-window-ms", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        match = re.search(r"edge listening on (\S+):(\d+)", line)
        if match:
            return proc, f"127.0.0.1:{match.group(2)}"
    proc.kill()
    raise AssertionError("gelato serve did not start")


@pytest.fixture(scope="module")
def edge():
    proc, address = spawn_edge()
    yield proc, address
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(pair, edge):
    draft, _, tok = pair
    backend = Backend(draft, tok, edge=EdgeSettings(edge[1], unreachable_after=1.0), model_name=MODEL)
    with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), Limits()) as srv:
        yield srv


def edge_sessions(address: str) -> int:
    with EdgeClient(address) as c:
        return int(c.health().active_sessions)


def wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_through_the_edge_equals_target_only(pair, server):
    reference, n = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), 24)
    client = openai_client(server.url)
    texts, usage = [], None
    for chunk in client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.choices:
            texts.append(chunk.choices[0].text)
        else:
            usage = chunk.usage
    assert "".join(texts) == reference and usage.completion_tokens == n
    assert usage.speculative["bytes"] == "measured" and usage.speculative["uplink_bytes"] > 0
    assert httpx.get(server.url + "/health").json()["verifier"] == "edge"
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0.9, seed=3)  # sampled q crosses the link
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text


def test_requests_through_the_edge_plan_with_what_they_measure(pair, server):
    """A planning policy over the edge plans with the backend's measured planner, which every request feeds
    (shared across requests); greedy output still equals the target's own."""
    reference, _ = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), 16)
    client = openai_client(server.url)
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0,
              extra_body={"speculative": {"policy": "gelato-improved"}})
    assert client.completions.create(**kw).choices[0].text == reference
    planner = server.state.backend.planner("compact")
    first = planner.seen
    assert first >= 1
    assert client.completions.create(**kw).choices[0].text == reference
    assert planner.seen > first and planner.fitted  # the second request's rounds joined the first's


def edge_metrics(address: str) -> dict:
    with EdgeClient(address) as c:
        return c.metrics()


def test_disconnect_mid_stream_closes_the_edge_session(server, edge):
    client = openai_client(server.url)
    before = edge_metrics(edge[1])
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=1000, temperature=0, stream=True,
                                       extra_body={"ignore_eos": True})
    next(iter(stream))
    assert edge_sessions(edge[1]) == 1  # the request's own session is open on the edge
    stream.close()
    assert wait_for(lambda: server.state.in_flight == 0)
    assert wait_for(lambda: edge_sessions(edge[1]) == 0)
    after = edge_metrics(edge[1])
    assert after["sessions"]["closed"] == before["sessions"]["closed"] + 1  # closed by the server, not expired
    assert after["tokens"] - before["tokens"] < 500  # the generation stopped: far short of the 1000 asked for
    assert "gelato_request_cancelled_total 1.0" in httpx.get(server.url + "/metrics").text


def test_edge_dies_mid_stream_error_event_and_server_keeps_serving(server, edge):
    proc, _ = edge
    client = openai_client(server.url)
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=1000, temperature=0, stream=True,
                                       extra_body={"ignore_eos": True})
    chunks = iter(stream)
    next(chunks)
    proc.kill()
    proc.wait(10)
    with pytest.raises(openai.APIError, match="edge"):
        for _ in chunks:
            pass
    assert wait_for(lambda: server.state.in_flight == 0)
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    with pytest.raises(openai.APIStatusError) as info:  # a new request: the edge is still gone
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
    assert info.value.status_code == 502 and info.value.response.json()["error"]["code"] == "edge_unavailable"

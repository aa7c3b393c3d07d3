"""Bad requests get their status and an OpenAI-shaped error naming the problem; the server stays up.

One server with API keys, a small body limit and one request in flight at a time.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from api_helpers import MODEL, PROMPT, openai_client

from gelato.api.backend import Backend
from gelato.api.respond import Limits
from gelato.api.server import ApiServerThread
from gelato.api.speculative import Speculation

pytestmark = pytest.mark.slow  # starts the API server

KEY = "sk-test-key"


@pytest.fixture(scope="module")
def server(pair):
    draft, target, tok = pair
    backend = Backend(draft, tok, target=target, model_name=MODEL)
    limits = Limits(max_tokens=1024, max_concurrent=1, max_body_bytes=64 * 1024, api_keys=frozenset({KEY}))
    with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), limits) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server.url, KEY)


def error_of(call) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as info:
        call()
    body = info.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return info.value.status_code, body["error"]


BAD_COMPLETIONS = [  # (extra arguments, param named in the error)
    ({"n": 2}, "n"),
    ({"logprobs": 2}, "logprobs"),
    ({"echo": True}, "echo"),
    ({"best_of": 3}, "best_of"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"temperature": 3.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"max_tokens": 5000}, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ({"extra_body": {"speculative": {"policy": "no-such-policy"}}}, "speculative.policy"),
    ({"extra_body": {"speculative": {"num_draft_tokens": 0}}}, "speculative.num_draft_tokens"),
    ({"extra_body": {"speculative": {"e_bar": 1.0}}}, "speculative.e_bar"),  # static has no energy budget
    ({"extra_body": {"speculative": {"payload": "jpeg"}}}, "speculative.payload"),
    ({"extra_body": {"speculative": {"k": 3}}}, "speculative.k"),
]


@pytest.mark.parametrize("extra,param", BAD_COMPLETIONS, ids=[p for _, p in BAD_COMPLETIONS])
def test_bad_completion_request_names_the_field(client, extra, param):
    kw = {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, **extra}
    status, err = error_of(lambda: client.completions.create(**kw))
    assert status == 400 and err["param"] == param and err["type"] == "invalid_request_error"


BAD_CHATS = [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": []}, "messages"),
]


@pytest.mark.parametrize("extra,param", BAD_CHATS, ids=[p for _, p in BAD_CHATS])
def test_bad_chat_request_names_the_field(client, extra, param):
    kw = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
    status, err = error_of(lambda: client.chat.completions.create(**kw))
    assert status == 400 and err["param"] == param


def test_unknown_model_is_404(client):
    status, err = error_of(lambda: client.completions.create(model="gpt-9", prompt=PROMPT, max_tokens=4))
    assert status == 404 and err["code"] == "model_not_found" and err["param"] == "model"


def test_context_length(client):
    status, err = error_of(lambda: client.completions.create(model=MODEL, prompt=[5] * 2000, max_tokens=100))
    assert status == 400 and err["code"] == "context_length_exceeded" and "2048" in err["message"]


def test_api_keys(server):
    status, err = error_of(lambda: openai_client(server.url, "sk-wrong").models.list())
    assert status == 401 and err["code"] == "invalid_api_key"
    r = httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": PROMPT})
    assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]


def test_body_too_large_and_not_json(server):
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(server.url + "/v1/completions", headers=auth, content=b'{"prompt": "' + b"x" * 100_000 + b'"}')
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(server.url + "/v1/completions", headers=auth, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.get(server.url + "/v1/nothing-here", headers=auth)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def wait_idle(server, timeout_s: float = 60.0) -> None:
    """Until no request is in flight (a closed stream frees its slot when the worker reaches its next round)."""
    deadline = time.monotonic() + timeout_s
    while server.state.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.state.in_flight, "a request still holds the one slot"


def test_too_many_requests_then_recovers(server, client):
    wait_idle(server)
    busy = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=1000, temperature=0, stream=True,
                                     extra_body={"ignore_eos": True})
    first = next(iter(busy))  # the one allowed request is now generating
    assert first.choices[0].text is not None
    with pytest.raises(openai.RateLimitError) as info:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
    assert info.value.response.headers["Retry-After"] == "1"
    assert info.value.response.json()["error"]["type"] == "rate_limit_error"
    busy.close()
    wait_idle(server)  # the client left: its slot comes back, and the next request is served
    out = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert out.usage.completion_tokens == 8 and out.choices[0].finish_reason == "length"


def test_server_stays_up_after_bad_requests(server, client):
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert httpx.post(server.url + "/v1/completions", headers=auth, content=b"{not json").status_code == 400
    assert error_of(lambda: client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, n=2))[0] == 400
    wait_idle(server)
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    out = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert out.usage.completion_tokens == 8 and out.choices[0].finish_reason == "length"

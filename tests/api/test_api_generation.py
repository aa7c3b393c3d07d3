"""The OpenAI-compatible server with the target in process, through the real ``openai`` client on loopback.

Greedy (temperature 0): streamed text == non-streamed text == target-only text, for completions and
chat; the usage block agrees with the streamed round records; stop strings end the text exactly, also
across rounds; concurrent requests each get the reference; ``/metrics`` counts what the requests did.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from api_helpers import CHAT, MODEL, PROMPT, openai_client, target_only_text

from gelato.api.backend import Backend
from gelato.api.respond import Limits
from gelato.api.server import ApiServerThread
from gelato.api.speculative import Speculation
from gelato.models.chat import encode_messages

pytestmark = pytest.mark.slow  # starts the API server

MAX_TOKENS = 24


@pytest.fixture(scope="module")
def server(pair):
    draft, target, tok = pair
    backend = Backend(draft, tok, target=target, system="paper", model_name=MODEL)
    with ApiServerThread(backend, Speculation("static-4", None, None, "compact"), Limits(max_concurrent=4)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server.url)


def stream_completion(client, **kw):
    """(text, round chunks, usage) of a streamed completion with include_usage."""
    texts, rounds, usage = [], [], None
    for chunk in client.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.choices:
            texts.append(chunk.choices[0].text)
            if getattr(chunk, "round", None):
                rounds.append(chunk.round)
        else:
            usage = chunk.usage
    return "".join(texts), rounds, usage


def test_completion_streamed_equals_whole_equals_target_only(pair, client):
    reference, n = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), MAX_TOKENS)
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    streamed, rounds, usage = stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    assert whole.choices[0].text == reference
    assert streamed == reference
    assert whole.usage.completion_tokens == usage.completion_tokens == n
    assert len(rounds) > 1 and len(rounds) < n  # one chunk per round, several tokens per chunk


def test_chat_streamed_equals_whole_equals_target_only(pair, client):
    reference, n = target_only_text(pair, encode_messages(pair[2], CHAT), MAX_TOKENS)
    whole = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=MAX_TOKENS, temperature=0)
    parts, roles = [], []
    for chunk in client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=MAX_TOKENS, temperature=0,
                                                stream=True):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            roles.append(chunk.choices[0].delta.role)
    assert whole.choices[0].message.content == reference
    assert "".join(parts) == reference
    assert whole.choices[0].message.role == "assistant" and roles[0] == "assistant"
    assert whole.usage.completion_tokens == n


def test_usage_agrees_with_the_round_records(client):
    _, rounds, usage = stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    spec = usage.speculative
    assert usage.prompt_tokens + usage.completion_tokens == usage.total_tokens
    assert sum(r["tokens"] for r in rounds) == usage.completion_tokens
    assert spec["rounds"] == len(rounds)
    assert spec["num_draft_tokens"] == sum(r["sent"] for r in rounds)
    assert spec["num_computed_draft_tokens"] == sum(r["drafted"] for r in rounds)
    assert spec["num_accepted_tokens"] == sum(r["accepted"] for r in rounds)
    assert spec["num_accepted_tokens"] == sum(spec["num_accepted_tokens_per_pos"])
    assert spec["uplink_bytes"] == sum(r["uplink_bytes"] for r in rounds) > 0
    assert spec["downlink_bytes"] == sum(r["downlink_bytes"] for r in rounds) > 0
    assert spec["mean_acceptance_length"] == pytest.approx(usage.completion_tokens / len(rounds))
    assert spec["draft_acceptance_rate"] == pytest.approx(spec["num_accepted_tokens"] / spec["num_draft_tokens"])
    assert spec["device_joules"] > 0  # the server runs the paper's system model
    assert spec["settings"] == {"policy": "static-4", "num_draft_tokens": None, "e_bar": None, "payload": "compact"}
    assert all(r["sent"] <= 4 for r in rounds)


def test_per_request_speculative_settings(pair, client):
    reference, _ = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), MAX_TOKENS)
    text, rounds, usage = stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                                            extra_body={"speculative": {"num_draft_tokens": 2, "payload": "paper_topp"}})
    assert text == reference  # lossless whatever the settings
    assert max(r["sent"] for r in rounds) == 2
    assert usage.speculative["settings"]["payload"] == "paper_topp"
    text, _, usage = stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                                       extra_body={"speculative": {"policy": "gelato-improved", "e_bar": 2.0}})
    assert text == reference
    assert usage.speculative["settings"]["policy"] == "gelato-improved"
    assert usage.speculative["settings"]["e_bar"] == 2.0


def test_stop_strings_across_rounds(pair, client):
    reference, _ = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), MAX_TOKENS)
    # a stop string that straddles a round boundary: the last 2 characters of one chunk + the first 2 of the next
    _, rounds_text = _round_texts(client)
    boundary = next(i for i in range(1, len(rounds_text)) if len(rounds_text[i - 1]) >= 2 and len(rounds_text[i]) >= 2)
    stop = rounds_text[boundary - 1][-2:] + rounds_text[boundary][:2]
    expected = reference[: reference.index(stop)]
    streamed, _, usage = stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stop=[stop])
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stop=stop)
    assert streamed == whole.choices[0].text == expected
    assert whole.choices[0].finish_reason == "stop"
    assert usage.completion_tokens < MAX_TOKENS


def test_edge_streaming_streams_each_token_as_it_arrives(pair, client):
    """``edge-streaming``: the edge decodes alone and each token is a chunk of its own as soon as it arrives; the
    text is the target's; a stop string inside the burst ends it exactly, and usage counts what was kept."""
    reference, n = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), MAX_TOKENS)
    texts, rounds, usage = [], [], None
    for chunk in client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                                           stream=True, stream_options={"include_usage": True},
                                           extra_body={"speculative": {"policy": "edge-streaming"}}):
        if not chunk.choices:
            usage = chunk.usage
        elif getattr(chunk, "round", None):
            rounds.append(chunk.round)
        elif chunk.choices[0].finish_reason is None:
            texts.append(chunk.choices[0].text)
    assert "".join(texts) == reference and len(texts) == n  # one chunk a token, before the burst's round ends
    assert usage.completion_tokens == n and usage.speculative["num_draft_tokens"] == 0
    assert [r["tokens"] for r in rounds] == [n]  # one burst: the rest of the answer
    stop = reference[len(reference) // 2:len(reference) // 2 + 3]
    cut = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stop=[stop],
                                    extra_body={"speculative": {"policy": "edge-streaming"}})
    assert cut.choices[0].text == reference[:reference.index(stop)] and cut.choices[0].finish_reason == "stop"


def _round_texts(client):
    texts = []
    for chunk in client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                                           stream=True):
        if chunk.choices and getattr(chunk, "round", None):
            texts.append(chunk.choices[0].text)
    return "".join(texts), texts


def test_sampling_is_reproducible_with_a_seed(client):
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0.8, top_p=0.9, seed=7)
    a, b = client.completions.create(**kw), client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text


def test_concurrent_requests_each_get_the_reference(pair, server, client):
    """Concurrent requests each get the target's own text, and the in-process edge verified some of their
    rounds together in one target forward."""
    prompts = [PROMPT, "Question: Sam has 4 boxes of 6 pens. How many pens?\nAnswer:",
               "Question: A train goes 60 km in 1 hour. How far in 3 hours?\nAnswer:"]
    refs = [target_only_text(pair, list(pair[2](p)["input_ids"]), MAX_TOKENS)[0] for p in prompts]

    def ask(prompt):
        return stream_completion(client, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)[0]

    edge = server.state.backend.local_edge_address() and server.state.backend._local_edge  # noqa: SLF001
    before = edge.metrics()["batch_sizes"]
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(ask, prompts)) == refs
    after = edge.metrics()["batch_sizes"]
    assert any(int(size) > 1 and n > before.get(size, 0) for size, n in after.items()), after


def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    health = httpx.get(server.url + "/health").json()
    deadline = time.monotonic() + 30  # earlier tests' workers end just after their last chunk
    while health["requests_in_flight"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["verifier"] == "local" and health["requests_in_flight"] == 0
    stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    scrape = httpx.get(server.url + "/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    values = _samples(scrape.text)
    assert values["gelato_spec_decode_num_drafts_total"] >= 1
    assert values["gelato_spec_decode_num_draft_tokens_total"] >= values["gelato_spec_decode_num_accepted_tokens_total"]
    per_pos = sum(v for k, v in values.items() if k.startswith("gelato_spec_decode_num_accepted_tokens_per_pos_total{"))
    assert per_pos == values["gelato_spec_decode_num_accepted_tokens_total"]
    assert values["gelato_time_to_first_token_seconds_count"] >= 1
    assert values["gelato_inter_token_latency_seconds_count"] >= 1
    assert values["gelato_device_energy_joules_total"] > 0
    # a request counts until its worker has finished (closing its edge session), which may end just after
    # the last chunk was sent: the gauge must come back to 0
    deadline = time.monotonic() + 30
    while values["gelato_num_requests_running"] != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        values = _samples(httpx.get(server.url + "/metrics").text)
    assert values["gelato_num_requests_running"] == 0


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_a_client_leaving_a_whole_request_cancels_it(server):
    def cancelled() -> float:
        return _samples(httpx.get(server.url + "/metrics").text).get("gelato_request_cancelled_total", 0.0)

    before = cancelled()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/completions", timeout=1.0,
                   json={"model": MODEL, "prompt": PROMPT, "max_tokens": 1000, "ignore_eos": True, "temperature": 0})
    import time

    deadline = time.monotonic() + 60
    while (server.state.in_flight or cancelled() == before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.state.in_flight == 0 and cancelled() == before + 1


@pytest.mark.parametrize("policy", ["static-5-pipelined", "gelato-improved-pipelined"])
def test_pipelined_policies_draft_ahead_through_the_api(pair, client, policy):
    """The API runs the one round loop: a pipelined policy drafts ahead while a round is verified (usage and
    the round chunks count the pre-drafted tokens) and the text is still the target's."""
    reference, n = target_only_text(pair, list(pair[2](PROMPT)["input_ids"]), MAX_TOKENS)
    text, rounds, usage = stream_completion(client, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                                            extra_body={"speculative": {"policy": policy}})
    assert text == reference
    spec = usage.speculative
    assert spec["settings"]["policy"] == policy
    assert spec["num_predrafted_tokens"] > 0
    assert spec["num_predrafted_tokens"] == sum(r["predrafted"] for r in rounds)
    assert spec["num_carried_draft_tokens"] == sum(r["carried"] for r in rounds)
    assert spec["num_carried_draft_tokens"] <= spec["num_predrafted_tokens"]

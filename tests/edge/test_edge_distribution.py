"""Lossless under sampling over the network: two-token samples drawn through a real edge on loopback follow
the target's exact distribution, for every payload mode, with batched verification, dropped streams and an
edge restart in the middle of the sampling.

Four device threads share the edge (``max_batch=4``), each drawing generations of two tokens (K = 2) with
an adversarial draft (an unrelated model, far from the target). One thread's client loses the reply of
every fifth round after the edge verified it (a burst's first message, with bursts), so its device resumes
on a new stream; halfway through, the
edge is stopped and restarted on the same port, and every device resumes. The chi-square test against
exact enumeration must pass, also when the device drafts from the truncated q~ (sparse proposals) and for the draws
payload with M = 1 (forced redraws); the same samples tested against the draft's own two-token distribution must
fail, which shows the sample size can tell the two apart, and a device that takes the first draw unconditionally
(the draws payload's negative control) must fail.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
import torch
from burst_helpers import PATTERNS, BurstMixPolicy
from distribution_helpers import PROMPT, VOCAB, chi_square_pvalue, exact_two_token_probs, logits_table
from edge_helpers import FaultyClient

from gelato.decoding import rejection
from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import Verdict
from gelato.device.client import RemoteVerifier
from gelato.device.edge_client import EdgeClient
from gelato.edge.process import EdgeServerThread
from gelato.edge.server import EdgeConfig, EdgeServer
from gelato.generation import DraftModelProposer, generate
from gelato.models.cached import CachedCausalLM
from gelato.models.tiny import tiny_llama
from gelato.policies import StaticPolicy
from gelato.wire.fingerprint import synthetic_fingerprint
from gelato.wire.payload import PayloadConfig

pytestmark = pytest.mark.slow  # starts an edge server

FINGERPRINT = synthetic_fingerprint(VOCAB)
DEVICES = 4
SAMPLES_PER_DEVICE = 300
PARAMS = SamplingParams(temperature=1.0)


@pytest.fixture(scope="module")
def models():
    target = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=3)
    draft = tiny_llama(vocab_size=VOCAB, hidden=16, layers=1, seed=7)
    return draft, target


def _start(target, port: int = 0) -> EdgeServerThread:
    server = EdgeServer(target, fingerprint=FINGERPRINT, config=EdgeConfig(max_batch=DEVICES, batch_window_ms=2.0,
                                                                         grace_s=0.05))
    thread = EdgeServerThread(server, port=port)
    thread.start()
    return thread


class FirstDrawVerifier(RemoteVerifier):
    """The negative control of the draws payload: the device takes the first draw of p unconditionally."""

    def _accept_draws(self, committed, draft, verdict, extra):
        return Verdict(accepted=verdict.accepted, token=verdict.draws[0][0], deferred=True)


class RedrawingVerifier(RemoteVerifier):
    """The forced fallback (a hook, exact): every verdict's draws are discarded unseen and a redraw exchange fetches
    fresh ones, so each rejection crosses the fallback path (discarding independent draws of p biases nothing).
    With MAX_REDRAWS 0 (the test sets it) a redraw whose draws fail too asks for the dense row."""

    dense_redraws = 0  # over all instances

    def _accept_draws(self, committed, draft, verdict, extra):
        base = committed + list(draft.tokens[:verdict.accepted])
        return super()._accept_draws(committed, draft, replace(verdict, draws=self._redraw(base, extra)), extra)

    def _redraw(self, base, extra, dense=False):
        RedrawingVerifier.dense_redraws += dense
        return super()._redraw(base, extra, dense)


def _payload(payload: str) -> str | PayloadConfig:
    """``draws-m1``: the draws payload with M = 1 (forced fallback: most rejections need a redraw exchange)."""
    return PayloadConfig(mode=PayloadMode.DRAWS, greedy=False, draws=1) if payload == "draws-m1" else payload


def _network_samples(models, payload: str, draft_top_k: int, verifier_cls=RemoteVerifier,
                     bursts: bool = False) -> tuple[list[tuple[int, int]], dict]:
    draft_model, target_model = models
    edge = {"server": _start(target_model)}
    port = edge["server"].port
    address = f"127.0.0.1:{port}"
    samples: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    stats = {"reopens": 0, "batched": 0, "streamed": 0, "restarted": False, "redraws": 0}
    quantized = payload.startswith("draws")  # the draws payload drafts from the whole q rounded to 2^24

    def device(i: int) -> None:
        try:
            client = (FaultyClient(address, {n: "drop_response" for n in range(5, 10_000, 5)}) if i == 0
                      else EdgeClient(address))
            proposer = DraftModelProposer(CachedCausalLM(draft_model), PARAMS, torch.Generator().manual_seed(100 + i),
                                          draft_top_k=draft_top_k, quantized=quantized)
            for j in range(SAMPLES_PER_DEVICE):
                verifier = verifier_cls(client, PARAMS, fingerprint=FINGERPRINT, seed=i * 1_000_003 + j,
                                        payload=_payload(payload), rpc_timeout=5.0, unreachable_after=20.0)
                try:
                    policy = (BurstMixPolicy(2, PATTERNS[j % len(PATTERNS)], n=1 + j // len(PATTERNS) % 2) if bursts
                              else StaticPolicy(2))
                    result = generate(PROMPT, proposer, verifier, policy, max_new_tokens=2)
                    ids = result.token_ids
                finally:
                    verifier.close()
                with lock:
                    samples.append((ids[0], ids[1]))
                    stats["reopens"] += verifier.stats.reopens
                    stats["batched"] += sum(t.batch > 1 for t in verifier.stats.timings)
                    stats["streamed"] += sum(r.streamed for r in result.rounds)
                    stats["redraws"] += verifier.stats.redraws
            client.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(i,)) for i in range(DEVICES)]
    for t in threads:
        t.start()
    try:
        while len(samples) < DEVICES * SAMPLES_PER_DEVICE // 2 and any(t.is_alive() for t in threads):
            time.sleep(0.01)
        edge["server"].stop()  # every session is gone; the devices resume on the new edge
        time.sleep(0.2)
        edge["server"] = _start(target_model, port=port)
        stats["restarted"] = True
        for t in threads:
            t.join(300)
    finally:
        edge["server"].stop()
    assert not errors, errors
    return samples, stats


@pytest.mark.parametrize("payload, draft_top_k, bursts", [("compact", 0, False), ("compact", 2, False),
                                                           ("dssd", 2, False), ("paper_topp", 2, False),
                                                           ("paper_topp", 0, False), ("draws", 0, False),
                                                           ("draws-m1", 0, False), ("draws", 0, True),
                                                           ("dssd", 2, True)])
def test_network_sampling_matches_target_with_batching_drops_and_restart(models, payload, draft_top_k, bursts,
                                                                         monkeypatch):
    """``draft_top_k`` 2 (of 6): sparse proposals, the device drafts from q~ and sends only its support.
    ``draws-m1``: the draws payload with M = 1 and every verdict's draws discarded for a redraw (forced fallback).
    ``bursts``: edge bursts (the edge streams tokens it generates itself) interleaved with drafted rounds."""
    draft_model, target_model = models
    if payload == "draws-m1":  # the dense fallback after one failed redraw
        monkeypatch.setattr(rejection, "MAX_REDRAWS", 0)
    samples, stats = _network_samples(models, payload, draft_top_k,
                                      RedrawingVerifier if payload == "draws-m1" else RemoteVerifier, bursts)
    assert (stats["streamed"] > len(samples) // 2) == bursts
    assert len(samples) == DEVICES * SAMPLES_PER_DEVICE
    assert stats["restarted"] and stats["reopens"] >= SAMPLES_PER_DEVICE // 10  # drops and the restart resumed
    assert stats["batched"] > 0  # rounds really were verified in batches
    if payload == "draws-m1":  # forced fallback: every rejection redrew (resuming across drops and the restart)
        assert stats["redraws"] >= SAMPLES_PER_DEVICE and RedrawingVerifier.dense_redraws > 0
    expected = exact_two_token_probs(logits_table(target_model), PARAMS)
    assert chi_square_pvalue(samples, expected) > 1e-3
    # power: the same samples are far from the draft's own distribution
    assert chi_square_pvalue(samples, exact_two_token_probs(logits_table(draft_model), PARAMS)) < 1e-6


def test_network_draws_taking_the_first_draw_fails(models):
    """Negative control over the network: a device that takes the first draw of p unconditionally is biased."""
    samples, _ = _network_samples(models, "draws", 0, FirstDrawVerifier)
    assert chi_square_pvalue(samples, exact_two_token_probs(logits_table(models[1]), PARAMS)) < 1e-6

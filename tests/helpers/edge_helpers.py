"""Shared helpers of the transport tests: tiny model pairs, references, servers and remote generation."""

from __future__ import annotations

import copy
import datetime
import ipaddress
import threading
import time
from collections.abc import Sequence

import grpc
import pytest
import torch

from gelato.decoding.sampling import SamplingParams
from gelato.device.client import RemoteVerifier
from gelato.device.edge_client import EdgeClient, EdgeStream
from gelato.edge.process import EdgeServerThread
from gelato.edge.server import EdgeConfig, EdgeServer
from gelato.generation import DraftModelProposer, generate
from gelato.generation.loop import GenerationResult, target_only_generate
from gelato.models.cached import CachedCausalLM
from gelato.models.tiny import noisy_copy, tiny_llama
from gelato.policies import StaticPolicy
from gelato.wire.fingerprint import synthetic_fingerprint

VOCAB = 96
FINGERPRINT = synthetic_fingerprint(VOCAB)
GREEDY = SamplingParams()
PROMPTS = [[3, 17, 42, 5, 8], [60, 1], [11, 12, 13, 14, 15, 16, 17, 18, 19], [77]]


def make_pair(seed: int = 10):
    """(target, draft): a random tiny Llama (LlamaConfig vocab 96, hidden 32, 2 layers, 4 heads, 2 KV heads)
    and a noisy copy of it, so drafts are partly accepted."""
    target = tiny_llama(vocab_size=VOCAB, hidden=32, layers=2, heads=4, seed=seed)
    return target, noisy_copy(target, noise=0.15, seed=seed + 1)


def reference(target, prompt: Sequence[int], n: int, params: SamplingParams = GREEDY) -> list[int]:
    return target_only_generate(CachedCausalLM(target), prompt, params, n).token_ids


def start_edge(target, port: int = 0, **config) -> EdgeServerThread:
    config.setdefault("grace_s", 0.1)
    thread = EdgeServerThread(EdgeServer(target, fingerprint=FINGERPRINT, config=EdgeConfig(**config)), port=port)
    thread.start()
    return thread


def remote_verifier(address: str | EdgeClient, params: SamplingParams = GREEDY, **kwargs) -> RemoteVerifier:
    kwargs.setdefault("rpc_timeout", 5.0)
    kwargs.setdefault("unreachable_after", 10.0)
    return RemoteVerifier(address, params, fingerprint=FINGERPRINT, **kwargs)


def remote_generate(address, draft, prompt: Sequence[int], n: int, policy=None, params: SamplingParams = GREEDY,
                    draft_generator: torch.Generator | None = None, on_round=None, verifier: RemoteVerifier | None = None,
                    on_token=None, **kwargs) -> tuple[GenerationResult, RemoteVerifier]:
    verifier = verifier or remote_verifier(address, params, **kwargs)
    proposer = DraftModelProposer(CachedCausalLM(draft), params, draft_generator)
    try:
        result = generate(prompt, proposer, verifier, policy or StaticPolicy(4), n, on_round=on_round,
                          on_token=on_token)
    finally:
        verifier.close()
    return result, verifier


def clone(model):
    return copy.deepcopy(model)


class _Lost(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _FaultyStream:
    """A real stream whose Nth round (1-based, counted over every stream of the client) is faulted."""

    def __init__(self, stream: EdgeStream, owner: "FaultyClient") -> None:
        self.stream, self.owner = stream, owner
        self.cut_in = None  # "cut:k": the stream breaks when the burst's k-th further message is due

    def receive(self, timeout, patience=None):
        if self.cut_in is not None:
            self.cut_in -= 1
            if self.cut_in <= 0:
                self.cut_in = None
                self.stream.cancel()
                raise _Lost(grpc.StatusCode.UNAVAILABLE, "injected: stream broke mid-burst")
        return self.stream.receive(timeout, patience)

    def exchange(self, up, timeout, patience=None):
        if up.WhichOneof("kind") != "draft":
            return self.stream.exchange(up, timeout, patience)
        self.owner.calls += 1
        action = self.owner.plan.get(self.owner.calls, "")
        if action:
            self.owner.injected.append(action)
        if action == "drop_request":  # never arrives: the device waits out its deadline
            time.sleep(timeout)
            raise _Lost(grpc.StatusCode.DEADLINE_EXCEEDED, "injected: request lost")
        if action.startswith("delay:"):
            time.sleep(float(action.split(":", 1)[1]))
        reply = self.stream.exchange(up, timeout)
        if action.startswith("cut:"):
            self.cut_in = int(action.split(":", 1)[1])
        if action == "drop_response":  # the edge verified the round; its reply is lost with the stream
            raise _Lost(grpc.StatusCode.UNAVAILABLE, "injected: reply lost")
        if action == "kill":
            self.owner.on_kill()
            raise _Lost(grpc.StatusCode.UNAVAILABLE, "injected: edge died before replying")
        return reply

    def end(self):
        self.stream.end()

    def cancel(self):
        self.stream.cancel()


class FaultyClient(EdgeClient):
    """Injects faults into the Nth round: the request never arrives ("drop_request"), the reply is lost
    after the edge verified the round ("drop_response"), the round is delayed ("delay:<seconds>"), the
    edge dies after verifying it ("kill", calling ``on_kill``), or a burst's stream breaks after its first
    message and k - 1 more ("cut:<k>")."""

    def __init__(self, target: str, plan: dict[int, str], on_kill=None) -> None:
        super().__init__(target)
        self.plan, self.calls, self.injected, self.on_kill = plan, 0, [], on_kill

    def open_stream(self):
        return _FaultyStream(super().open_stream(), self)


def finishes(fn, *args, guard_s: float = 120.0, **kwargs):
    """``fn(*args, **kwargs)``'s result (or its exception), failing the test if it has not returned after
    ``guard_s``: a generous guard against a hang, never the quantity a test asserts."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            out["error"] = exc
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(guard_s)
    if worker.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {guard_s:g} s (hung)")
    if "error" in out:
        raise out["error"]
    return out["value"]


class _RecordingStream:
    def __init__(self, stream: EdgeStream, waits: list[float]) -> None:
        self.stream, self.waits = stream, waits

    def exchange(self, up, timeout, patience=None):
        self.waits.append(timeout)
        return self.stream.exchange(up, timeout, patience)

    def end(self):
        self.stream.end()

    def cancel(self):
        self.stream.cancel()


class RecordingClient(EdgeClient):
    """A real client that records the wait the device asks for on every exchange (``waits``, seconds)."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.waits: list[float] = []

    def open_stream(self):
        return _RecordingStream(super().open_stream(), self.waits)


def self_signed_certificate(tmp_path):
    """A self-signed certificate for localhost/127.0.0.1 written to tmp_path/edge.crt and edge.key; (cert, key) PEM."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("the 'cryptography' package is not installed: cannot make a self-signed certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (tmp_path / "edge.crt").write_bytes(cert_pem)
    (tmp_path / "edge.key").write_bytes(key_pem)
    return cert_pem, key_pem

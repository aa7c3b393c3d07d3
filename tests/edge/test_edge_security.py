"""Bearer tokens, TLS, and precise statuses for malformed, oversized or out-of-range requests, while a
healthy session keeps generating the right text."""

from __future__ import annotations

import math
import threading
import time

import grpc
import pytest
from edge_helpers import FINGERPRINT, PROMPTS, reference, remote_generate, self_signed_certificate, start_edge

from gelato.device.edge_client import EdgeClient
from gelato.policies import StaticPolicy
from gelato.wire.auth import load_tokens, parse_token_lines
from gelato.wire.errors import EdgeTLSError
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.proto import gelato_pb2_grpc as pb_grpc
from gelato.wire.protocol import GENERATE

pytestmark = pytest.mark.slow  # starts an edge server

TOKENS = {"tok-a": "dev-a", "tok-b": "dev-b"}
N = 20


def _code(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def _md(token: str | None):
    return (("authorization", f"Bearer {token}"),) if token else ()


class RawStreams:
    """Generate streams with raw bytes: each call sends ``messages`` then half-closes, and returns the
    replies and the final status."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.call = self.channel.stream_stream(GENERATE)  # identity (de)serializers: raw bytes
        self.stub = pb_grpc.EdgeStub(self.channel)

    def run(self, *messages, token: str | None = "tok-a") -> tuple[list[pb.StreamDown], grpc.StatusCode]:
        raw = [m if isinstance(m, bytes) else m.SerializeToString() for m in messages]
        replies = []
        try:
            for r in self.call(iter(raw), timeout=10, metadata=_md(token)):
                replies.append(pb.StreamDown.FromString(r))
        except grpc.RpcError as exc:
            return replies, exc.code()
        return replies, grpc.StatusCode.OK

    def code(self, *messages, **kw) -> grpc.StatusCode:
        return self.run(*messages, **kw)[1]


def open_msg(prompt=(1, 2, 3), sampling=None, fp=FINGERPRINT, **kw) -> pb.StreamUp:
    return pb.StreamUp(open=pb.OpenRequest(prompt_ids=list(prompt), sampling=sampling or pb.SamplingSettings(),
                                           tokenizer_fingerprint=fp, **kw))


def draft_msg(tokens, position=3, round_=1, **kw) -> pb.StreamUp:
    return pb.StreamUp(draft=pb.DraftUp(position=position, round=round_, token_ids=tokens, **kw))


def test_token_files(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("# devices\nphone:abc123\n\nlaptop: def456\nxyz789\n")
    assert load_tokens(path) == {"abc123": "phone", "def456": "laptop", "xyz789": "device-3"}
    assert load_tokens(["a:b"]) == {"b": "a"} and load_tokens(None) is None
    with pytest.raises(ValueError, match="line 1"):
        parse_token_lines(["name:has space"])
    with pytest.raises(FileNotFoundError):
        load_tokens(tmp_path / "missing.txt")


def test_bad_requests_get_precise_statuses_and_healthy_session_continues(pair):
    target, draft = pair
    server = start_edge(target, tokens=TOKENS, max_sessions=4, max_draft_tokens=8, max_prompt_tokens=64,
                        max_message_bytes=8192)
    raw = RawStreams(server.address)
    stub = raw.stub
    healthy: dict = {}
    A = _md("tok-a")
    INVALID, PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION

    def probes(record):
        if record.index != 2:
            return
        # authentication
        assert _code(lambda: stub.Health(pb.HealthRequest(), timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.Health(pb.HealthRequest(), timeout=5, metadata=_md("wrong"))) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.Health(pb.HealthRequest(), timeout=5, metadata=(("authorization", "Basic x"),))) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert stub.Health(pb.HealthRequest(), timeout=5, metadata=A).status == "SERVING"
        assert raw.code(open_msg(), token=None) == grpc.StatusCode.UNAUTHENTICATED
        # Open validation
        assert raw.code(open_msg(fp="sha256:other")) == PRECONDITION
        assert raw.code(open_msg(prompt=())) == INVALID
        assert raw.code(open_msg(prompt=[1] * 65)) == INVALID
        assert raw.code(open_msg(prompt=[1, 500])) == INVALID
        assert raw.code(open_msg(sampling=pb.SamplingSettings(temperature=-1))) == INVALID
        assert raw.code(open_msg(sampling=pb.SamplingSettings(temperature=math.nan))) == INVALID
        assert raw.code(open_msg(sampling=pb.SamplingSettings(top_p=1.5))) == INVALID
        assert raw.code(open_msg(max_new_tokens=600)) == grpc.StatusCode.OUT_OF_RANGE
        # rounds: out of order, wrong position, oversized, outside the vocabulary, before open
        assert raw.code(draft_msg([5])) == PRECONDITION
        assert raw.code(open_msg(), draft_msg(list(range(9)))) == INVALID  # > 8 tokens
        assert raw.code(open_msg(), draft_msg([5, 96])) == INVALID  # outside vocab 96
        assert raw.code(open_msg(), draft_msg([5], pending_ids=[1000], position=4)) == INVALID
        assert raw.code(open_msg(), draft_msg([5], round_=3)) == PRECONDITION
        assert raw.code(open_msg(), draft_msg([5], position=7)) == PRECONDITION
        assert raw.code(open_msg(), open_msg()) == PRECONDITION  # one session per stream
        # undecodable bytes: garbage and a truncated message; oversized
        assert raw.code(b"\xff\xff\xff\xff\xff") == INVALID
        good = draft_msg([5, 6, 7, 300, 4000]).SerializeToString()
        assert raw.code(open_msg(), good[:-3]) == INVALID
        assert raw.code(b"\x0a" * 9000) == grpc.StatusCode.RESOURCE_EXHAUSTED  # over max_message_bytes
        # a well-formed stream: two rounds, then close
        replies, code = raw.run(open_msg(), draft_msg([5, 6]), pb.StreamUp(close=pb.CloseRequest()))
        assert code == grpc.StatusCode.OK and [r.WhichOneof("kind") for r in replies] == ["opened", "verdict", "closed"]
        assert replies[1].verdict.round == 1 and replies[1].verdict.has_token and replies[1].verdict.accepted <= 2
        # sampled sessions: q must be a real distribution containing each drafted token
        sampled = open_msg(sampling=pb.SamplingSettings(temperature=1.0, seed=3))
        q_bad_sum = pb.SparseDistribution(ids=[5, 6], probs=[0.2, 0.2])
        q_no_token = pb.SparseDistribution(ids=[6], probs=[1.0])
        assert raw.code(sampled, draft_msg([5])) == INVALID  # no q at all
        assert raw.code(sampled, draft_msg([5], q=[q_bad_sum])) == INVALID
        assert raw.code(sampled, draft_msg([5], q=[q_no_token])) == INVALID
        assert raw.code(sampled, draft_msg([5], q_token=[0.0])) == INVALID
        assert raw.code(sampled, draft_msg([5], q_packed=[b""])) == INVALID  # was INTERNAL (min of nothing)
        dense = [0.0] * 96  # a q without ids is dense over the vocabulary
        dense[5] = dense[7] = 0.5
        replies, code = raw.run(sampled, draft_msg([5], q=[pb.SparseDistribution(ids=[5, 6], probs=[0.5, 0.5])]))
        assert code == grpc.StatusCode.OK and replies[1].verdict.round == 1
        ok = replies[1].verdict
        replies, code = raw.run(sampled, draft_msg([5], q=[pb.SparseDistribution(ids=[5, 6], probs=[0.5, 0.5])]),
                                draft_msg([5], position=ok.position, round_=2, q=[pb.SparseDistribution(probs=dense)]))
        assert code == grpc.StatusCode.OK and replies[2].verdict.round == 2
        assert raw.code(sampled, draft_msg([5], q=[pb.SparseDistribution(probs=dense[:50])])) == INVALID
        # the session limit: healthy + 3 held streams = 4
        client = EdgeClient(server.address, token="tok-b")
        held = [client.open_stream() for _ in range(3)]
        for stream in held:
            assert stream.exchange(open_msg(), 5).WhichOneof("kind") == "opened"
        assert raw.code(open_msg()) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in held:
            stream.cancel()
        client.close()
        healthy["probed"] = True

    try:
        client = EdgeClient(server.address, token="tok-a")
        from edge_helpers import remote_verifier
        healthy["verifier"] = remote_verifier(client)
        result, verifier = remote_generate(None, draft, PROMPTS[0], N, policy=StaticPolicy(3), on_round=probes,
                                           verifier=healthy["verifier"])
        for _ in range(50):  # streams cancelled by the device end on the edge a moment later
            metrics = server.metrics()
            if metrics["sessions"]["active"] == 0:
                break
            time.sleep(0.05)
    finally:
        raw.channel.close()
        server.stop()
    assert healthy.get("probed")
    assert result.token_ids == reference(target, PROMPTS[0], N)
    assert verifier.stats.retries == 0 and verifier.stats.reopens == 0
    assert metrics["sessions"]["active"] == 0
    assert metrics["errors"]["UNAUTHENTICATED"] == 4 and metrics["errors"]["INVALID_ARGUMENT"] >= 12


@pytest.mark.parametrize("settings, limit, code", [
    (dict(sampling=pb.SamplingSettings(temperature=1e-38)), None, grpc.StatusCode.INVALID_ARGUMENT),
    (dict(prompt=list(range(16)), max_new_tokens=0), 16, grpc.StatusCode.OUT_OF_RANGE),
], ids=["tiny-temperature", "prompt-fills-context"])
def test_open_refuses_settings_that_can_never_verify(pair, settings, limit, code):
    server = start_edge(pair[0], max_context_tokens=limit)
    raw = RawStreams(server.address)
    try:
        assert raw.code(open_msg(**settings), token=None) == code
    finally:
        raw.channel.close()
        server.stop()


def test_per_device_quota_and_device_backs_off_when_busy(pair):
    """A credential at its quota is refused (RESOURCE_EXHAUSTED); a device retries with backoff and goes
    on once a session frees, instead of failing."""
    target, draft = pair
    server = start_edge(target, tokens=TOKENS, max_sessions_per_device=1)
    hog = EdgeClient(server.address, token="tok-a")
    held = hog.open_stream()
    try:
        assert held.exchange(open_msg(), 5).WhichOneof("kind") == "opened"
        other = RawStreams(server.address)  # another credential is not affected
        assert other.run(open_msg(), token="tok-b")[1] == grpc.StatusCode.OK
        other.channel.close()
        threading.Timer(0.5, held.cancel).start()
        result, verifier = remote_generate(EdgeClient(server.address, token="tok-a"), draft, PROMPTS[0], 8)
    finally:
        hog.close()
        server.stop()
    assert result.token_ids == reference(target, PROMPTS[0], 8)
    assert verifier.stats.busy_retries >= 1


def test_tls_with_self_signed_certificate(pair, tmp_path):
    target, draft = pair
    cert, key = self_signed_certificate(tmp_path)
    server = start_edge(target, tls_cert_chain=cert, tls_private_key=key, tokens=TOKENS)
    try:
        client = EdgeClient(server.address, token="tok-b", root_ca=tmp_path / "edge.crt")
        result, _ = remote_generate(client, draft, PROMPTS[1], 12)
        client.close()
        assert result.token_ids == reference(target, PROMPTS[1], 12)
    finally:
        server.stop()


def test_tls_mistakes_fail_fast_naming_tls(pair, tmp_path):
    """Wrong CA, wrong name, plaintext against TLS and TLS against plaintext: an EdgeTLSError naming TLS
    long before the unreachable window (60 s) runs out."""
    target, draft = pair
    cert, key = self_signed_certificate(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    self_signed_certificate(other)
    tls_edge = start_edge(target, tls_cert_chain=cert, tls_private_key=key)
    plain_edge = start_edge(target)
    clients = [EdgeClient(tls_edge.address, root_ca=other / "edge.crt"),
               EdgeClient(tls_edge.address, root_ca=tmp_path / "edge.crt", server_name="example.com"),
               EdgeClient(tls_edge.address),
               EdgeClient(plain_edge.address, root_ca=tmp_path / "edge.crt")]
    try:
        for client in clients:
            with pytest.raises(EdgeTLSError, match="TLS") as info:
                remote_generate(client, draft, PROMPTS[1], 4, unreachable_after=60.0, rpc_timeout=30.0)
            assert info.value.generated_ids == []
            client.close()
    finally:
        tls_edge.stop()
        plain_edge.stop()

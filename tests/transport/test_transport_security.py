"""Bearer tokens, TLS, and precise statuses for malformed, oversized or out-of-range requests, while a
healthy session keeps generating the right text."""

from __future__ import annotations

import datetime
import ipaddress
import math

import grpc
import pytest

from edge_helpers import FINGERPRINT, PROMPTS, reference, remote_generate, start_edge
from gelato.policies import StaticPolicy
from gelato.transport.auth import load_tokens, parse_token_lines
from gelato.transport.client import EdgeClient
from gelato.transport.errors import EdgeUnavailableError
from gelato.wire.proto import gelato_pb2 as pb
from gelato.wire.proto import gelato_pb2_grpc as pb_grpc

TOKENS = {"tok-a": "dev-a", "tok-b": "dev-b"}
N = 20


def _code(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def _md(token: str | None):
    return (("authorization", f"Bearer {token}"),) if token else ()


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
    channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.EdgeStub(channel)
    raw_verify = channel.unary_unary("/gelato.v1.Edge/Verify")  # identity (de)serializers: raw bytes
    healthy: dict = {}
    A = _md("tok-a")

    def open_(prompt=(1, 2, 3), token="tok-a", **kw):
        sampling = kw.pop("sampling", pb.SamplingSettings())
        return stub.Open(pb.OpenRequest(prompt_ids=list(prompt), sampling=sampling,
                                        tokenizer_fingerprint=kw.pop("fp", FINGERPRINT), **kw),
                         timeout=5, metadata=_md(token))

    def verify(session, tokens, position=3, round_=1, token="tok-a", **kw):
        return stub.Verify(pb.DraftUp(session=session, position=position, round=round_, token_ids=tokens, **kw),
                           timeout=5, metadata=_md(token))

    def probes(record):
        if record.index != 2:
            return
        sid = healthy["verifier"].session
        assert sid
        # authentication
        assert _code(lambda: stub.Health(pb.HealthRequest(), timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.Health(pb.HealthRequest(), timeout=5, metadata=_md("wrong"))) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.Health(pb.HealthRequest(), timeout=5, metadata=(("authorization", "Basic x"),))) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert stub.Health(pb.HealthRequest(), timeout=5, metadata=A).status == "SERVING"
        # another device cannot touch the healthy session; unknown sessions are NOT_FOUND
        assert _code(lambda: verify(sid, [1], token="tok-b")) == grpc.StatusCode.PERMISSION_DENIED
        assert _code(lambda: verify(12345, [1])) == grpc.StatusCode.NOT_FOUND
        assert _code(lambda: stub.Close(pb.CloseRequest(session=12345), timeout=5, metadata=A)) \
            == grpc.StatusCode.NOT_FOUND
        # Open validation
        assert _code(lambda: open_(fp="sha256:other")) == grpc.StatusCode.FAILED_PRECONDITION
        assert _code(lambda: open_(prompt=())) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: open_(prompt=[1] * 65)) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: open_(prompt=[1, 500])) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: open_(sampling=pb.SamplingSettings(temperature=-1))) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: open_(sampling=pb.SamplingSettings(temperature=math.nan))) \
            == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: open_(sampling=pb.SamplingSettings(top_p=1.5))) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: open_(max_new_tokens=600)) == grpc.StatusCode.OUT_OF_RANGE
        # Verify validation on a fresh (greedy) probe session
        probe = open_().session
        assert _code(lambda: verify(probe, list(range(9)))) == grpc.StatusCode.INVALID_ARGUMENT  # > 8 tokens
        assert _code(lambda: verify(probe, [5, 96])) == grpc.StatusCode.INVALID_ARGUMENT  # outside vocab 96
        assert _code(lambda: verify(probe, [5], pending_ids=[1000], position=4)) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: verify(probe, [5], round_=3)) == grpc.StatusCode.FAILED_PRECONDITION
        assert _code(lambda: verify(probe, [5], position=7)) == grpc.StatusCode.FAILED_PRECONDITION
        # undecodable bytes: garbage and a truncated message
        assert _code(lambda: raw_verify(b"\xff\xff\xff\xff\xff", timeout=5, metadata=A)) \
            == grpc.StatusCode.INVALID_ARGUMENT
        good = pb.DraftUp(session=probe, position=3, round=1, token_ids=[5, 6, 7, 300, 4000]).SerializeToString()
        assert _code(lambda: raw_verify(good[:-3], timeout=5, metadata=A)) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: raw_verify(b"\x0a" * 9000, timeout=5, metadata=A)) \
            == grpc.StatusCode.RESOURCE_EXHAUSTED  # over max_message_bytes
        # the probe session survived every bad request
        reply = verify(probe, [5, 6])
        assert reply.round == 1 and reply.has_token and reply.accepted <= 2
        assert verify(probe, [5, 6]) == reply  # a retried round is answered identically
        assert _code(lambda: verify(probe, [5, 7])) == grpc.StatusCode.FAILED_PRECONDITION  # same round, other draft
        # sampled sessions: q must be a real distribution containing each drafted token
        sampled = open_(sampling=pb.SamplingSettings(temperature=1.0, seed=3)).session
        q_bad_sum = pb.SparseDistribution(ids=[5, 6], probs=[0.2, 0.2])
        q_no_token = pb.SparseDistribution(ids=[6], probs=[1.0])
        assert _code(lambda: verify(sampled, [5])) == grpc.StatusCode.INVALID_ARGUMENT  # no q at all
        assert _code(lambda: verify(sampled, [5], q=[q_bad_sum])) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: verify(sampled, [5], q=[q_no_token])) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: verify(sampled, [5], q_token=[0.0])) == grpc.StatusCode.INVALID_ARGUMENT
        ok = verify(sampled, [5], q=[pb.SparseDistribution(ids=[5, 6], probs=[0.5, 0.5])])
        assert ok.round == 1
        dense = [0.0] * 96  # a q without ids is dense over the vocabulary
        dense[5] = dense[7] = 0.5
        ok2 = verify(sampled, [5], position=ok.position, round_=2, q=[pb.SparseDistribution(probs=dense)])
        assert ok2.round == 2 and ok2.position > ok.position
        assert _code(lambda: verify(sampled, [5], position=ok2.position, round_=3,
                                    q=[pb.SparseDistribution(probs=dense[:50])])) == grpc.StatusCode.INVALID_ARGUMENT
        # the session limit (healthy + probe + sampled + 1 more = 4)
        extra = open_().session
        assert _code(lambda: open_()) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for s in (probe, sampled, extra):
            stub.Close(pb.CloseRequest(session=s), timeout=5, metadata=A)
        healthy["probed"] = True

    try:
        client = EdgeClient(server.address, token="tok-a")
        from edge_helpers import remote_verifier
        healthy["verifier"] = remote_verifier(client)
        result, verifier = remote_generate(None, draft, PROMPTS[0], N, policy=StaticPolicy(3), on_round=probes,
                                           verifier=healthy["verifier"])
        metrics = server.metrics()
    finally:
        channel.close()
        server.stop()
    assert healthy.get("probed")
    assert result.token_ids == reference(target, PROMPTS[0], N)
    assert verifier.stats.retries == 0 and verifier.stats.reopens == 0
    assert metrics["sessions"]["active"] == 0 and metrics["cache_tokens"] == 0
    assert metrics["errors"]["UNAUTHENTICATED"] == 3 and metrics["errors"]["INVALID_ARGUMENT"] >= 12


def _self_signed(tmp_path):
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


def test_tls_with_self_signed_certificate(pair, tmp_path):
    target, draft = pair
    cert, key = _self_signed(tmp_path)
    server = start_edge(target, tls_cert_chain=cert, tls_private_key=key, tokens=TOKENS)
    try:
        client = EdgeClient(server.address, token="tok-b", root_ca=tmp_path / "edge.crt")
        result, _ = remote_generate(client, draft, PROMPTS[1], 12)
        client.close()
        assert result.token_ids == reference(target, PROMPTS[1], 12)
        # a plaintext client cannot talk to the TLS edge: it stays unreachable, then a clear error
        with pytest.raises(EdgeUnavailableError):
            remote_generate(EdgeClient(server.address, token="tok-b"), draft, PROMPTS[1], 4,
                            unreachable_after=0.5, rpc_timeout=0.3)
        # an untrusted CA fails too
        with pytest.raises(EdgeUnavailableError):
            remote_generate(EdgeClient(server.address, token="tok-b", tls=True), draft, PROMPTS[1], 4,
                            unreachable_after=0.5, rpc_timeout=0.3)
    finally:
        server.stop()

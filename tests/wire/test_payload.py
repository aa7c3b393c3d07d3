import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from gelato.decoding.types import Draft, SparseDist, Verdict
from gelato.wire.payload import (
    PayloadConfig,
    build_draft_up,
    build_verdict_down,
    draft_bits,
    message_bits,
    pack_support,
    packed_nbytes,
    q_from_draft_up,
    synthetic_topp_bits,
    topp_support,
    unpack_support,
    verdict_bits,
)
from gelato.wire.proto import gelato_pb2 as pb


def varint_len(x: int) -> int:
    return max(1, math.ceil(x.bit_length() / 7))


def make_draft(tokens, q=None, start=100, token_probs=None):
    n = len(tokens)
    return Draft(tokens=list(tokens), q=q, entropies=[0.5] * n, token_probs=token_probs or [0.25] * n,
                 max_probs=[0.5] * n, budget=n, n_computed=n, start=start)


def sd(ids, probs):
    return SparseDist(ids=torch.tensor(ids, dtype=torch.int64), probs=torch.tensor(probs, dtype=torch.float32))


GREEDY = PayloadConfig(mode="compact", greedy=True)


@pytest.mark.parametrize("token_id,bytes_each", [(5, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (151000, 3)])
def test_ids_only_grow_as_varints(token_id, bytes_each):
    sizes = [len(build_draft_up(make_draft([token_id] * n), GREEDY).SerializeToString()) for n in range(1, 30)]
    assert all(b - a == bytes_each for a, b in zip(sizes, sizes[1:]))


def test_ids_only_exact_framing():
    msg = build_draft_up(make_draft([1, 2, 300]), GREEDY, round_index=5)
    # session fixed64 (1 + 8) + position 100 (1 + 1) + round 5 (1 + 1) + token_ids (1 + 1 + 1 + 1 + 2)
    assert len(msg.SerializeToString()) == 9 + 2 + 2 + 6
    assert message_bits(msg, header_bits=320) == 8 * 19 + 320
    assert not msg.q and not msg.q_packed and not msg.q_token


def test_greedy_compact_does_not_send_q_even_if_present():
    q = [sd([1, 2], [0.6, 0.4])]
    assert build_draft_up(make_draft([1], q=q), GREEDY) == build_draft_up(make_draft([1]), GREEDY)


def test_sampling_compact_sends_exact_sparse_q_sized_by_support():
    cfg = PayloadConfig(mode="compact", greedy=False)
    base = len(build_draft_up(make_draft([3]), GREEDY).SerializeToString())
    sizes = {}
    for s in range(1, 20):
        q = [sd(list(range(s)), [1.0 / s] * s)]
        msg = build_draft_up(make_draft([3], q=q), cfg)
        sizes[s] = len(msg.SerializeToString())
        inner = (2 + s) + (2 + 4 * s)  # packed ids (ids < 128) + packed float probs
        assert sizes[s] == base + 1 + varint_len(inner) + inner
        back = q_from_draft_up(msg, cfg)[0]
        assert back.ids.tolist() == list(range(s)) and torch.equal(back.probs, q[0].probs)
    assert sizes[5] - sizes[4] == 5  # one more entry: 1 id byte + 4 probability bytes
    with pytest.raises(ValueError, match="needs q"):
        build_draft_up(make_draft([3]), cfg)


def test_topp_support_by_hand():
    q = sd([7, 3, 9, 1], [0.15, 0.5, 0.05, 0.3])
    ids, probs = topp_support(q, 0.7)
    assert ids.tolist() == [3, 1]
    ids, probs = topp_support(q, 0.85)
    assert ids.tolist() == [3, 1, 7] and probs.tolist() == pytest.approx([0.5, 0.3, 0.15])
    assert topp_support(q, 1.0)[0].tolist() == [3, 1, 7, 9]


@pytest.mark.parametrize("n", [0, 1, 3, 8, 1000])
def test_packer_roundtrip_float32(n):
    rng = np.random.default_rng(n)
    ids = rng.integers(0, 2**18, size=n)
    probs = rng.random(n).astype(np.float32)
    data = pack_support(ids, probs, 18, 32)
    assert len(data) == packed_nbytes(n, 18, 32) == math.ceil(n * 50 / 8)
    back_ids, back_probs = unpack_support(data, 18, 32)
    assert back_ids.tolist() == ids.tolist()
    assert np.array_equal(back_probs, probs)


def test_packer_roundtrip_fixed_point_and_half():
    rng = np.random.default_rng(1)
    ids, probs = rng.integers(0, 2**17, size=37), rng.random(37)
    b_ids, b_probs = unpack_support(pack_support(ids, probs, 17, 12), 17, 12)
    assert b_ids.tolist() == ids.tolist()
    assert np.max(np.abs(b_probs - probs)) <= 0.5 / (2**12 - 1) + 1e-7
    h_ids, h_probs = unpack_support(pack_support(ids, probs, 17, 16), 17, 16)
    assert h_ids.tolist() == ids.tolist()
    assert np.allclose(h_probs, probs.astype(np.float16).astype(np.float32))


def test_packer_bit_layout_by_hand():
    # b_index 4, b_prob 4 fixed point: id 0b1010 then round(1.0 * 15) = 0b1111 -> one byte 0xAF
    assert pack_support([10], [1.0], 4, 4) == bytes([0xAF])
    # two 6-bit entries (3 + 3): 0b101 0b111, 0b001 0b000 -> 101111 001000 + 4 zero bits -> 0xBC 0x80
    assert pack_support([5, 1], [1.0, 0.0], 3, 3) == bytes([0b10111100, 0b10000000])
    with pytest.raises(ValueError, match="does not fit"):
        pack_support([16], [0.5], 4, 4)


def test_paper_topp_message_size_matches_formula():
    cfg = PayloadConfig(mode="paper_topp", top_p=1.0, b_index=18, b_prob=32)
    supports = [3, 40, 700]
    q = [sd(list(range(s)), [1.0 / s] * s) for s in supports]
    draft = make_draft([5, 6, 7], q=q)
    msg = build_draft_up(draft, cfg)
    ids_only = len(build_draft_up(draft, GREEDY).SerializeToString())
    expected = ids_only + sum(1 + varint_len(packed_nbytes(s, 18, 32)) + packed_nbytes(s, 18, 32) for s in supports)
    assert len(msg.SerializeToString()) == expected
    assert [len(b) for b in msg.q_packed] == [math.ceil(s * 50 / 8) for s in supports]
    # the edge unpacks exactly the sent support
    back = q_from_draft_up(msg, cfg)
    assert [b.support_size for b in back] == supports
    # synthetic sizing agrees with the real packer
    assert synthetic_topp_bits(supports, cfg, token_ids=draft.tokens, position=draft.start) == draft_bits(draft, cfg)


def test_paper_topp_truncates_to_threshold():
    cfg = PayloadConfig(mode="paper_topp", top_p=0.9)
    q = [sd([0, 1, 2, 3], [0.6, 0.35, 0.04, 0.01])]
    msg = build_draft_up(make_draft([0], q=q), cfg)
    assert len(msg.q_packed[0]) == packed_nbytes(2, 18, 32)


def test_synthetic_topp_bits_grow_with_support():
    cfg = PayloadConfig(mode="paper_topp")
    a = synthetic_topp_bits([5000] * 7, cfg)
    b = synthetic_topp_bits([5001] * 7, cfg)
    assert b - a == pytest.approx(7 * 50, abs=7 * 8)
    assert a >= 7 * 5000 * 50
    with pytest.raises(ValueError):
        synthetic_topp_bits([0], cfg)


def test_dssd_uplink_and_downlink():
    cfg = PayloadConfig(mode="dssd", greedy=False)
    draft = make_draft([1, 2, 3], token_probs=[0.5, 0.25, 0.125])
    msg = build_draft_up(draft, cfg)
    assert list(msg.q_token) == [0.5, 0.25, 0.125]
    ids_only = len(build_draft_up(draft, GREEDY).SerializeToString())
    assert len(msg.SerializeToString()) == ids_only + 2 + 12
    # rejection with the dense p: target_p carries its support, no token
    p = torch.zeros(64)
    p[[4, 9, 33]] = torch.tensor([0.5, 0.3, 0.2])
    down = build_verdict_down(Verdict(accepted=1, token=-1, residual_p=p), cfg, n_sent=3)
    assert not down.has_token and list(down.target_p.ids) == [4, 9, 33]
    # rejection without a dense p: synthetic support size when configured
    synth = PayloadConfig(mode="dssd", greedy=False, dssd_target_support=100, vocab_size=151936)
    d2 = build_verdict_down(Verdict(accepted=1, token=7), synth, n_sent=3)
    assert len(d2.target_p.ids) == 100 and not d2.has_token
    assert len(d2.target_p.SerializeToString()) == (1 + 2 + 300) + (1 + 2 + 400)  # 3-byte ids, 4-byte probs
    # a full accept sends the bonus token
    d3 = build_verdict_down(Verdict(accepted=3, token=7), synth, n_sent=3)
    assert d3.has_token and d3.token == 7 and not d3.HasField("target_p")


def test_verdict_bits_include_header():
    cfg = PayloadConfig(header_bits_down=64)
    msg = build_verdict_down(Verdict(accepted=2, token=200), cfg, round_index=3, position=120)
    assert msg.accepted == 2 and msg.token == 200 and msg.has_token and msg.position == 120
    assert verdict_bits(Verdict(accepted=2, token=200), cfg, 3, 120) == 8 * len(msg.SerializeToString()) + 64
    assert isinstance(pb.VerdictDown.FromString(msg.SerializeToString()), pb.VerdictDown)


def test_payload_config_validation():
    with pytest.raises(ValidationError):
        PayloadConfig(mode="zip")
    with pytest.raises(ValidationError, match="cannot index"):
        PayloadConfig(b_index=16, vocab_size=151936)
    with pytest.raises(ValidationError, match="float"):
        PayloadConfig(prob_format="float", b_prob=20)
    with pytest.raises(ValidationError):
        PayloadConfig(top_p=0)


@pytest.mark.parametrize("scale,top_p", [(0.5, 0.99995), (2.0, 0.99), (6.0, 0.99998)])
def test_topp_support_matches_a_full_sort(scale, top_p):
    gen = torch.Generator().manual_seed(0)
    q = SparseDist.from_dense(torch.softmax(torch.randn(20000, generator=gen) * scale, -1))
    ids, probs = topp_support(q, top_p)
    p = q.probs.numpy().astype(np.float64)
    order = np.lexsort((q.ids.numpy(), -p))
    keep = int(np.nonzero(np.cumsum(p[order]) >= top_p)[0][0]) + 1
    assert ids.tolist() == q.ids.numpy()[order][:keep].tolist()
    assert float(probs.astype(np.float64).sum()) >= top_p - 1e-6

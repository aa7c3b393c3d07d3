import json

import pytest

from gelato.system.compute import (
    QWEN25_0_5B,
    QWEN25_7B,
    ConstantCompute,
    FlopsCompute,
    MeasuredProfile,
    ModelDims,
    RooflineCompute,
    calibrate_profile,
    draft_seconds,
    forward_flops,
    next_pending,
    verify_seconds,
)


def paper_F(dims, g, L):
    d, dff = dims.d_model, dims.d_ff
    return dims.n_layers * g * (8 * d**2 + 4 * (L + g / 2) * d + 4 * d * dff)


def test_flops_formula_by_hand():
    # 24 * (8*896^2 + 4*100.5*896 + 4*896*4864) = 24 * 24,215,296
    assert forward_flops(QWEN25_0_5B, 1, 100) == 581_167_104
    assert forward_flops(QWEN25_7B, 3, 50) == paper_F(QWEN25_7B, 3, 50)


@pytest.mark.parametrize("g,L", [(1, 0), (7, 100), (15, 300)])
def test_sequential_single_forwards_sum_to_paper_formula(g, L):
    model = FlopsCompute(QWEN25_0_5B, 40e9)
    assert draft_seconds(model, g, L, n_pending=0) == pytest.approx(paper_F(QWEN25_0_5B, g, L) / 40e9, rel=1e-12)


def test_sequential_accounting_with_pending_tokens():
    model = FlopsCompute(QWEN25_0_5B, 1e9)
    f = model.forward_seconds
    # real proposer: first forward feeds the pending committed tokens ending at position L-1
    assert draft_seconds(model, 3, 10, n_pending=1) == pytest.approx(f(1, 9) + f(1, 10) + f(1, 11))
    assert draft_seconds(model, 3, 10, n_pending=2) == pytest.approx(f(2, 8) + f(1, 10) + f(1, 11))
    assert draft_seconds(model, 0, 10, n_pending=1) == 0.0


def test_next_pending_the_draft_cache_rule():
    assert next_pending(1, 0, 0) == 2 and next_pending(3, 0, 0) == 4  # nothing computed: the verdict token piles up
    assert next_pending(1, 4, 4) == 2 and next_pending(3, 1, 1) == 2  # all accepted: verdict + the unfed last token
    assert next_pending(1, 4, 3) == 1 and next_pending(5, 4, 0) == 1  # a rejection: only the verdict token


def test_verify_and_constant():
    assert verify_seconds(ConstantCompute(0.1), 7, 100) == 0.1
    m = FlopsCompute(QWEN25_7B, 1e12)
    assert verify_seconds(m, 4, 100) == pytest.approx(paper_F(QWEN25_7B, 5, 99) / 1e12)
    with pytest.raises(ValueError):
        ConstantCompute(-1)
    with pytest.raises(ValueError):
        FlopsCompute(QWEN25_0_5B, 0)


def test_roofline_bandwidth_then_compute_bound():
    m = RooflineCompute(QWEN25_7B, 100e12, 300e9, 15e9)
    assert m.forward_seconds(1, 100) == pytest.approx(0.05)
    assert m.forward_seconds(8, 100) == pytest.approx(0.05)  # still bandwidth bound
    big = m.forward_seconds(4000, 0)
    assert big == pytest.approx(forward_flops(QWEN25_7B, 4000, 0) / 100e12)
    assert big > 0.05


def test_dims_from_config(tmp_path, make_tiny_llama):
    cfg = {"num_hidden_layers": 24, "hidden_size": 896, "intermediate_size": 4864, "vocab_size": 151936}
    assert ModelDims.from_config(cfg) == QWEN25_0_5B
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert ModelDims.from_config(tmp_path) == QWEN25_0_5B
    model = make_tiny_llama(0, layers=2, hidden=32)
    assert ModelDims.from_config(model.config) == ModelDims(2, 32, 64)
    with pytest.raises(ValueError, match="intermediate_size"):
        ModelDims.from_config({"num_hidden_layers": 2, "hidden_size": 8})
    with pytest.raises(ValueError):
        ModelDims(0, 8, 8)


def test_profile_fit_recovers_coefficients_and_json_roundtrip(tmp_path):
    a, b, c = 2e-3, 5e-4, 3e-6
    samples = [(n, ctx, a + b * n + c * n * ctx) for n in (1, 2, 4, 8) for ctx in (16, 64, 256)]
    prof = MeasuredProfile.fit(samples)
    assert (prof.a, prof.b, prof.c) == pytest.approx((a, b, c), rel=1e-6)
    assert prof.forward_seconds(3, 100) == pytest.approx(a + 3 * b + 300 * c)
    slow = prof.scaled(4.0)
    assert slow.forward_seconds(3, 100) == pytest.approx(4 * prof.forward_seconds(3, 100))
    path = slow.save(tmp_path / "p.json")
    back = MeasuredProfile.load(path)
    assert back == slow and back.forward_seconds(5, 7) == slow.forward_seconds(5, 7)
    with pytest.raises(ValueError, match="unknown fields"):
        MeasuredProfile.from_dict({"a": 1, "b": 1, "c": 1, "oops": 2})


def test_profile_fit_is_non_negative():
    # data that an unconstrained fit would explain with a negative intercept
    samples = [(n, 10, 1e-3 * n - 5e-4) for n in (1, 2, 4, 8)]
    prof = MeasuredProfile.fit(samples)
    assert min(prof.a, prof.b, prof.c) >= 0
    with pytest.raises(ValueError):
        MeasuredProfile.fit(samples[:2])


def test_calibrate_tiny_model(make_tiny_llama):
    prof = calibrate_profile(make_tiny_llama(0), n_values=(1, 4), ctx_values=(8, 32), repeats=2, warmup=1)
    assert len(prof.meta["samples"]) == 4
    assert all(t > 0 for _, _, t in prof.meta["samples"])
    assert prof.forward_seconds(1, 8) > 0
    assert prof.forward_seconds(4, 32) >= prof.forward_seconds(1, 8)

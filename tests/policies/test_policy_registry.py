"""The registry: every name builds, payload modes, and what each policy needs."""

from __future__ import annotations

import pytest

from gelato.decoding.policy import RoundContext
from gelato.decoding.types import RoundRecord
from gelato.policies import (
    POLICIES,
    DraftPolicy,
    LinearRoundPredictor,
    RoundPredictor,
    draft_length_setting,
    make_policy,
    policy_spec,
)
from gelato.wire.payload import PayloadMode

EXPECTED = {"static-5", "static-7", "static-9", "dssd", "edge-autoregressive", "gelato-paper", "gelato-improved",
            "gelato-outer-only", "gelato-inner-only", "hf-heuristic", "hf-confidence", "pmin", "svip", "adaedl",
            "adaptive-goodput"}
PRED = LinearRoundPredictor()


def test_every_expected_name_is_registered():
    assert EXPECTED <= set(POLICIES)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_builds_with_a_predictor_and_has_a_payload_mode(name):
    cfg = {"predictor": PRED, "energy_budget": 1.0, }
    p = make_policy(name, **cfg)
    assert isinstance(p, DraftPolicy)
    mode = POLICIES[name].payload_mode
    assert mode is None or PayloadMode(mode) in PayloadMode  # a value of the one payload-mode enum
    ctx = RoundContext(index=0, generated=0, context_len=5, max_budget=50)
    b = p.budget(ctx)
    assert isinstance(b, int) and 0 <= b <= 50
    p.observe(RoundRecord(index=0, start=5, budget=b, drafted=b, sent=b, accepted=0, token=1,
                          entropies=[0.5] * b))  # no clock: charge None
    assert isinstance(p.state(), dict)


def test_payload_modes_and_fixed_budgets():
    ctx = RoundContext(index=0, generated=0, context_len=5, max_budget=50)
    assert policy_spec("dssd").payload_mode == PayloadMode.DSSD
    assert make_policy("dssd").budget(ctx) == 7
    assert policy_spec("edge-autoregressive").payload_mode == PayloadMode.EDGE_AR
    assert make_policy("edge-autoregressive").budget(ctx) == 0
    for k in (5, 7, 9):
        p = make_policy(f"static-{k}")
        assert p.budget(ctx) == k and policy_spec(f"static-{k}").payload_mode is None and p.name == f"static-{k}"
    assert make_policy("static-5", k=3).budget(ctx) == 3  # an explicit K (the API's num_draft_tokens) wins
    # any K by name, spelled one way: static-K; other spellings are refused with the right one
    assert make_policy("static-12").budget(ctx) == 12 and make_policy("static-3").name == "static-3"
    for wrong in ("static:3", "static", "static_3"):
        with pytest.raises(ValueError, match="spelled static-K"):
            make_policy(wrong)
    for name in POLICIES:  # a policy calls itself by its registry name (round logs, tables)
        assert make_policy(name, predictor=PRED).name == name


def test_config_reaches_the_constructor():
    ctx = RoundContext(index=0, generated=0, context_len=5, max_budget=50)
    assert make_policy("hf-heuristic", num_assistant_tokens=3).budget(ctx) == 3
    assert make_policy("pmin", p_min=0.5).p_min == 0.5
    assert make_policy("gelato-paper", predictor=PRED, V=10.0, e_bar=0.5).config.e_bar == 0.5
    # the run's energy budget reaches the GELATO variants, unless their own e_bar is given
    assert make_policy("gelato-paper", predictor=PRED, energy_budget=0.7).config.e_bar == 0.7
    assert make_policy("gelato-paper", predictor=PRED, energy_budget=0.7, e_bar=0.5).config.e_bar == 0.5
    assert make_policy("static-5", predictor=PRED, energy_budget=0.7).k == 5  # ignored where unused
    assert make_policy("gelato-inner-only", g_max=6).budget(ctx) == 6


def test_errors_are_clear():
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("gelato-fast")
    with pytest.raises(ValueError, match="K must be >= 1"):
        make_policy("static-0")
    for name in ("gelato-paper", "gelato-outer-only", "gelato-improved"):
        with pytest.raises(ValueError, match="predictor"):
            make_policy(name)
    with pytest.raises(TypeError):
        make_policy("static-5", k_max=3)
    for name, length, why in (("hf-confidence", 4, "has no draft length"), ("edge-autoregressive", 2, "no draft"),
                              ("static-5", 0, "must be >= 1"), ("gelato-paper", -1, "must be >= 1")):
        with pytest.raises(ValueError, match=why) as exc:
            make_policy(name, predictor=PRED, draft_length=length)
        assert "\n" not in str(exc.value)  # one clear line (never pydantic's multi-line report)


def test_one_draft_length_override_per_policy():
    """``draft_length`` sets each policy's own length argument (``PolicySpec.length_arg``)."""
    assert make_policy("static-5", draft_length=3).k == 3 and make_policy("static-12", draft_length=2).k == 2
    assert make_policy("dssd", draft_length=4).k == 4
    assert make_policy("gelato-paper", predictor=PRED, draft_length=6).config.g_max == 6
    assert make_policy("gelato-improved", predictor=PRED, draft_length=9).config.g_max == 9
    assert make_policy("adaptive-goodput", predictor=PRED, draft_length=7).k_max == 7
    assert draft_length_setting("static-5", None) == {} and draft_length_setting("gelato-paper", 8) == {"g_max": 8}


def test_linear_predictor_is_a_round_predictor():
    assert isinstance(PRED, RoundPredictor)
    t1, e1 = PRED.predict(1, None, 10, 10_000.0)
    t2, e2 = PRED.predict(2, None, 10, 10_000.0)
    assert t2 > t1 and e2 > e1

    class Link:
        uplink_bps = 1e6

    assert PRED.predict(2, Link(), 10, 10_000.0)[0] > t2  # a slower link than the nominal 10 Mbit/s

"""Closed loop through the real round loop: ``run_policy`` -> ``gelato.generation.generate`` with the synthetic
proposer/verifier (the paper's regime) and the paper's modelled clock, over several seeds.

At 5 MHz and T_V = 100 ms an energy budget of E_bar = 0.8 J/round binds: static SD with K = 7 spends about
1.23 J. Each claim below holds on every seed, with the margin stated next to it.
"""

from __future__ import annotations

import pytest

from gelato.constants import within_energy_budget
from gelato.experiments.runner import RunResult, run_policy, synthetic_prompt_runs
from gelato.policies.registry import make_policy
from gelato.system.config import SystemConfig

E_BAR = 0.8
SEEDS = (0, 1, 2)
ROUNDS = 1000
CONFIGS = {"static-7": ("static-7", {}), "paper-V1": ("gelato-paper", {"V": 1.0}),
           "paper-V10": ("gelato-paper", {"V": 10.0}), "paper-V100": ("gelato-paper", {"V": 100.0}),
           "improved": ("gelato-improved", {})}

pytestmark = pytest.mark.slow


def run(name: str, cfg: dict, seed: int) -> RunResult:
    clock = SystemConfig.paper(bandwidth_mhz=5.0).build_clock(seed)
    policy = make_policy(name, predictor=clock, energy_budget=E_BAR, **cfg)
    return run_policy(policy, clock, synthetic_prompt_runs(seed), ROUNDS, E_BAR)


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, int], RunResult]:
    return {(label, seed): run(name, cfg, seed) for seed in SEEDS for label, (name, cfg) in CONFIGS.items()}


def energy(r: RunResult, second_half: bool = False) -> float:
    rows = r.rows[len(r.rows) // 2:] if second_half else r.rows
    return sum(row["e_round"] for row in rows) / len(rows)


def throughput(r: RunResult) -> float:
    return r.summary["tokens_per_second"]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_run_has_exactly_the_rounds_asked(runs, seed):
    assert all(len(runs[(label, seed)].rows) == ROUNDS for label in CONFIGS)


@pytest.mark.parametrize("seed", SEEDS)
def test_static_k7_overspends_the_budget_by_more_than_40_percent(runs, seed):
    assert energy(runs[("static-7", seed)]) > 1.4 * E_BAR


@pytest.mark.parametrize("seed", SEEDS)
def test_gelato_paper_at_small_V_meets_the_budget_within_2_percent_and_uses_it(runs, seed):
    e = energy(runs[("paper-V1", seed)])
    assert e >= 0.95 * E_BAR and within_energy_budget(e, E_BAR)


@pytest.mark.parametrize("seed", SEEDS)
def test_gelato_paper_overspend_grows_with_V(runs, seed):
    """The queue must hold about V times the energy multiplier before it prices energy right; over 1000
    rounds that accumulated overspend is what the time average shows (no O(1/V) claim: the paper's
    guarantee is weaker, see docs/design-decisions.md)."""
    e = [energy(runs[(k, seed)]) for k in ("paper-V1", "paper-V10", "paper-V100")]
    assert e[0] < e[1] < e[2]
    assert e[2] > 1.1 * E_BAR


@pytest.mark.parametrize("seed", SEEDS)
def test_gelato_improved_meets_the_budget_within_2_percent_over_the_run_and_its_second_half(runs, seed):
    r = runs[("improved", seed)]
    assert energy(r) >= 0.95 * E_BAR and within_energy_budget(energy(r), E_BAR)
    assert within_energy_budget(energy(r, second_half=True), E_BAR)  # not only thanks to an early under-spend


@pytest.mark.parametrize("seed", SEEDS)
def test_gelato_improved_is_at_parity_with_paper_at_the_same_energy(runs, seed):
    """In the paper's own synthetic regime (acceptance exactly exp(-0.35 H)) the paper's surrogate is right,
    so gelato-improved can only match it: within 5% of gelato-paper's throughput at V = 1 (measured: 96-100%)."""
    assert throughput(runs[("improved", seed)]) >= 0.95 * throughput(runs[("paper-V1", seed)])


@pytest.mark.parametrize("seed", SEEDS)
def test_gelato_budgets_stay_in_range_and_move(runs, seed):
    def room(row: dict) -> int:  # what the loop allows: the answer's remaining tokens - 1 (prompt: 100, answer: 256)
        return 256 - (row["start"] - 100) - 1

    for label in ("paper-V1", "paper-V100", "improved"):
        assert all(min(1, room(row)) <= row["budget"] <= 15 for row in runs[(label, seed)].rows)
    assert len({row["budget"] for row in runs[("paper-V1", seed)].rows}) > 1  # the channel and the queue move it

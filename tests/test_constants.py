"""The paper's constants are spelled once (gelato/constants.py) and every default reads them; the budget test."""

from __future__ import annotations

import pytest

from gelato import constants
from gelato.constants import within_energy_budget
from gelato.experiments.config import RunConfig
from gelato.policies.gelato_improved import GelatoImprovedConfig
from gelato.policies.gelato_paper import GelatoConfig


def test_the_constants_are_the_papers_numbers():
    # the one place where the paper's numbers are written as literals outside constants.py
    assert (constants.E_BAR_J, constants.G_MAX, constants.RHO0, constants.C, constants.BUCKET_FACTOR,
            constants.V, constants.BUDGET_TOLERANCE) == (1.2, 15, 0.9, 0.35, 1.2, 100.0, 0.02)


def test_policy_and_run_defaults_read_the_constants():
    paper, improved = GelatoConfig(), GelatoImprovedConfig()
    assert (paper.V, paper.e_bar, paper.rho0, paper.c, paper.bucket_factor, paper.g_max) == (
        constants.V, constants.E_BAR_J, constants.RHO0, constants.C, constants.BUCKET_FACTOR, constants.G_MAX)
    assert (improved.e_bar, improved.rho0, improved.c, improved.g_max) == (
        constants.E_BAR_J, constants.RHO0, constants.C, constants.G_MAX)
    assert RunConfig(source="synthetic").e_bar == constants.E_BAR_J


@pytest.mark.parametrize(("energy", "e_bar", "expected"), [
    (1.2, 1.2, True),             # at the budget
    (1.224, 1.2, True),           # at the 2% edge
    (1.23, 1.2, False),           # above E_bar (1 + 2%)
    (0.0, 1.2, True),
    (0.81, 0.8, True), (0.82, 0.8, False),
])
def test_within_energy_budget_is_e_bar_times_one_plus_tolerance(energy, e_bar, expected):
    assert within_energy_budget(energy, e_bar) is expected


def test_within_energy_budget_takes_another_tolerance():
    assert within_energy_budget(1.3, 1.2, tolerance=0.1)
    assert not within_energy_budget(1.21, 1.2, tolerance=0.0)

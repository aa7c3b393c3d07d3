"""The GELATO paper's settings (arXiv 2605.10124), spelled once; the lowest layer, it imports nothing of gelato.

Every default that is "the paper's value" reads it from here: the policies' configs, ``system/presets.py``'s
``PAPER``, the experiments' run configs and the CLI options. docs/design-decisions.md says where each comes from.
"""

from __future__ import annotations

E_BAR_J: float = 1.2
"""E_bar, the long-term device energy budget per round in joules (Table I; the outer loop's queue target)."""

G_MAX: int = 15
"""g_max, the largest draft length the outer loop may choose (Table I; every sweep policy is capped at it)."""

RHO0: float = 0.9
"""rho0, the nominal per-token acceptance the outer loop plans with (Table I, EN(g) at a = rho0)."""

C: float = 0.35
"""c, the slope of the entropy-acceptance map phi(H) = exp(-c H), H in nats (the paper's fit for its pair)."""

BUCKET_FACTOR: float = 1.2
"""The inner loop's leaky-bucket limit in units of H_th = phi^-1(rho0): stop when B_i > 1.2 H_th (Sec. inner loop)."""

V: float = 100.0
"""V, the Lyapunov weight of throughput against the queue (Fig. 4 runs V = 10 and 100; the default 100 is fixed in
docs/design-decisions.md, "Paper-mode constants")."""

BUDGET_TOLERANCE: float = 0.02
"""A run is "within the energy budget" when its mean round energy is at most E_bar (1 + 2%) (the test of
docs/design-decisions.md, "Beyond the paper"; the paper's long-run constraint measured over a finite run)."""


def within_energy_budget(mean_energy_j: float, e_bar_j: float, tolerance: float = BUDGET_TOLERANCE) -> bool:
    """Whether a mean round energy (J) meets the budget ``e_bar_j`` within ``tolerance``: ``<= e_bar (1 + tol)``."""
    return bool(float(mean_energy_j) <= float(e_bar_j) * (1.0 + tolerance))

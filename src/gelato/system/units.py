"""Unit conversions used by the system model (powers, gains, bandwidths).

Conventions: powers in watts (W) inside the code, dBm only at the configuration boundary; gains are
*power* gains (linear, dimensionless); ``dB`` is ``10 log10`` of a power ratio.
"""

from __future__ import annotations

import math

MHZ = 1e6
KHZ = 1e3
GFLOPS = 1e9
TFLOPS = 1e12
MS = 1e-3


def db_to_linear(db: float) -> float:
    """Power ratio in dB -> linear: ``10 ** (dB / 10)``."""
    return 10.0 ** (db / 10.0)


def linear_to_db(x: float) -> float:
    """Linear power ratio -> dB; ``x`` must be > 0."""
    if not x > 0:
        raise ValueError(f"a power ratio in dB needs a positive linear value, got {x}")
    return 10.0 * math.log10(x)


def dbm_to_w(dbm: float) -> float:
    """Power in dBm -> watts: ``10 ** ((dBm - 30) / 10)`` (0 dBm = 1 mW). Works for dBm/Hz -> W/Hz too."""
    return 10.0 ** ((dbm - 30.0) / 10.0)


def w_to_dbm(watts: float) -> float:
    """Power in watts -> dBm; ``watts`` must be > 0."""
    if not watts > 0:
        raise ValueError(f"a power in dBm needs a positive number of watts, got {watts}")
    return 10.0 * math.log10(watts) + 30.0

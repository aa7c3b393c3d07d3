"""Draft-length policies: a per-round budget, a per-token keep-drafting decision, an update per round.

``make_policy(name, **cfg)`` builds any of them by its name in ``POLICIES``; see docs/policies.md.
"""

from gelato.policies.base import DraftPolicy, RoundContext
from gelato.policies.common import PolicyBase
from gelato.policies.early_exit import AdaEDLPolicy, PMinPolicy, SVIPPolicy
from gelato.policies.fixed import DSSDPolicy, EdgeAutoregressivePolicy, StaticSDPolicy
from gelato.policies.gelato_improved import GelatoImprovedConfig, GelatoImprovedPolicy
from gelato.policies.gelato_paper import (
    GelatoConfig,
    GelatoInnerOnlyPolicy,
    GelatoOuterOnlyPolicy,
    GelatoPaperPolicy,
)
from gelato.policies.goodput import AdaptiveGoodputPolicy
from gelato.policies.hf import HFAssistedPolicy, hf_confidence, hf_heuristic
from gelato.policies.predictor import LinearRoundPredictor, RoundPredictor
from gelato.policies.registry import POLICIES, PolicySpec, make_policy
from gelato.policies.static import StaticPolicy

__all__ = [
    "POLICIES", "AdaEDLPolicy", "AdaptiveGoodputPolicy", "DSSDPolicy", "DraftPolicy", "EdgeAutoregressivePolicy",
    "GelatoConfig", "GelatoImprovedConfig", "GelatoImprovedPolicy", "GelatoInnerOnlyPolicy",
    "GelatoOuterOnlyPolicy", "GelatoPaperPolicy", "HFAssistedPolicy", "LinearRoundPredictor", "PMinPolicy",
    "PolicyBase", "PolicySpec", "RoundContext", "RoundPredictor", "SVIPPolicy", "StaticPolicy", "StaticSDPolicy",
    "hf_confidence", "hf_heuristic", "make_policy",
]

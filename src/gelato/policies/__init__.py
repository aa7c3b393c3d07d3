"""Draft-length policies: a per-round budget, a per-token keep-drafting decision, an update per round.

``make_policy(name, ...)`` builds any of them by its name in ``POLICIES`` (the one builder); see docs/policies.md.
"""

from gelato.decoding.policy import DraftPolicy, RoundContext
from gelato.policies.early_exit import AdaEDLPolicy, PMinPolicy, SVIPPolicy
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
from gelato.policies.registry import POLICIES, PolicySpec, draft_length_setting, make_policy, policy_spec
from gelato.policies.static import DSSDPolicy, EdgeAutoregressivePolicy, StaticPolicy

__all__ = [
    "POLICIES", "AdaEDLPolicy", "AdaptiveGoodputPolicy", "DSSDPolicy", "DraftPolicy", "EdgeAutoregressivePolicy",
    "GelatoConfig", "GelatoImprovedConfig", "GelatoImprovedPolicy", "GelatoInnerOnlyPolicy",
    "GelatoOuterOnlyPolicy", "GelatoPaperPolicy", "HFAssistedPolicy", "LinearRoundPredictor", "PMinPolicy",
    "PolicySpec", "RoundContext", "RoundPredictor", "SVIPPolicy", "StaticPolicy",
    "draft_length_setting", "hf_confidence", "hf_heuristic", "make_policy", "policy_spec",
]

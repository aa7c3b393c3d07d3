"""Every draft-length policy by name: ``POLICIES`` and ``make_policy(name, **cfg)``.

``cfg`` goes to the policy's constructor; policies that plan with a system model take ``predictor=`` (any
object with ``predict(g, link, context_len, bits_per_token) -> (seconds, joules)``, e.g. the modelled
clock), and passing one to a policy that does not use it is allowed and ignored, so a runner can hand the
same ``predictor`` to every name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gelato.policies.base import DraftPolicy
from gelato.policies.early_exit import AdaEDLPolicy, PMinPolicy, SVIPPolicy
from gelato.policies.fixed import DSSDPolicy, EdgeAutoregressivePolicy, StaticSDPolicy
from gelato.policies.gelato_improved import GelatoImprovedPolicy
from gelato.policies.gelato_paper import (
    GelatoInnerOnlyPolicy,
    GelatoOuterOnlyPolicy,
    GelatoPaperPolicy,
)
from gelato.policies.goodput import AdaptiveGoodputPolicy
from gelato.policies.hf import hf_confidence, hf_heuristic
from gelato.policies.pipelined import GelatoImprovedPipelinedPolicy, StaticPipelinedPolicy


@dataclass(frozen=True)
class PolicySpec:
    factory: Callable[..., DraftPolicy]
    summary: str
    uses_predictor: bool = False  # True: takes predictor=... (required where the summary says so)


def _static(k: int) -> Callable[..., DraftPolicy]:
    def make(**cfg: Any) -> DraftPolicy:
        return StaticSDPolicy(k=cfg.pop("k", k), **cfg)
    return make


POLICIES: dict[str, PolicySpec] = {
    "static": PolicySpec(lambda k, **cfg: StaticSDPolicy(k=k, **cfg), "static SD, K=k (required)"),
    "static-5": PolicySpec(_static(5), "static SD, K=5"),
    "static-7": PolicySpec(_static(7), "static SD, K=7"),
    "static-9": PolicySpec(_static(9), "static SD, K=9"),
    "dssd": PolicySpec(DSSDPolicy, "DSSD, static K=7, payload_mode 'dssd'"),
    "edge-autoregressive": PolicySpec(EdgeAutoregressivePolicy, "no draft: the edge decodes 1 token/round, "
                                      "payload_mode 'edge_ar'"),
    "gelato-paper": PolicySpec(GelatoPaperPolicy, "GELATO as published (predictor required)", True),
    "gelato-outer-only": PolicySpec(GelatoOuterOnlyPolicy, "GELATO budget, no early exit (predictor required)",
                                    True),
    "gelato-inner-only": PolicySpec(GelatoInnerOnlyPolicy, "GELATO entropy bucket, budget g_max, no queue", True),
    "gelato-improved": PolicySpec(GelatoImprovedPolicy, "gelato-improved (ours): online estimates, ratio "
                                  "objective, energy price, optimal stopping (predictor required)", True),
    "hf-heuristic": PolicySpec(hf_heuristic, "transformers heuristic schedule: start 5, +2 / -1"),
    "hf-confidence": PolicySpec(hf_confidence, "transformers >= 4.45 default: 20 tokens, stop after q < 0.4"),
    "pmin": PolicySpec(PMinPolicy, "llama.cpp --draft-p-min 0.75 (low-confidence token not sent)"),
    "svip": PolicySpec(SVIPPolicy, "SVIP: stop before a token with sqrt(0.15 H) > 0.3"),
    "adaedl": PolicySpec(AdaEDLPolicy, "AdaEDL: stop before a token with 1 - sqrt(0.2 H) < 0.7"),
    "adaptive-goodput": PolicySpec(AdaptiveGoodputPolicy, "SmartSpec-style K = argmax EN(k)/T(k)", True),
    "static-5-pipelined": PolicySpec(lambda **cfg: StaticPipelinedPolicy(k=cfg.pop("k", 5), **cfg),
                                     "static SD, K=5, always drafts K+1 ahead while verifying (what fits in the "
                                     "wait)", True),
    "gelato-improved-pipelined": PolicySpec(GelatoImprovedPipelinedPolicy, "gelato-improved (ours) drafting "
                                            "ahead while verifying, depth priced by the energy queue "
                                            "(predictor required)", True),
}


def make_policy(name: str, **cfg: Any) -> DraftPolicy:
    """Build the policy registered as ``name`` with constructor arguments ``cfg``."""
    try:
        spec = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None
    if not spec.uses_predictor:
        cfg.pop("predictor", None)
    return spec.factory(**cfg)

"""Every draft-length policy by name: ``POLICIES`` and ``make_policy(name, ...)``, the one builder (the CLI, the
API, the experiments and the testbed build every policy with it).

``cfg`` goes to the policy's constructor. Three run-wide settings may be handed to every name, and reach
only the policies that use them: ``draft_length=`` (the policy's (largest) draft length, set through its
``PolicySpec.length_arg``: ``static-K``'s ``k``, GELATO's ``g_max``...; refused for a policy without one),
``predictor=`` (any object with ``predict(g, link, context_len, bits_per_token) -> (seconds, joules)``, e.g.
the modelled clock) and ``energy_budget=`` (the run's device energy budget per round, J, given as ``e_bar``
to the GELATO variants unless ``cfg`` sets its own). A bound that is not the policy's own (a trace's longest
rollout, the edge's largest round) is the round loop's ceiling, never a wrapper around the policy.

Each entry also carries the payload its policy implies (``payload_mode``: a value of
``gelato.decoding.payload_modes.PayloadMode``, or None for the run's own setting), so a runner picks the clock's
payload without building the policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.policy import DraftPolicy
from gelato.policies.early_exit import AdaEDLPolicy, PMinPolicy, SVIPPolicy
from gelato.policies.gelato_improved import GelatoImprovedPolicy
from gelato.policies.gelato_paper import GelatoInnerOnlyPolicy, GelatoOuterOnlyPolicy, GelatoPaperPolicy
from gelato.policies.goodput import AdaptiveGoodputPolicy
from gelato.policies.hf import hf_confidence, hf_heuristic
from gelato.policies.pipelined import GelatoImprovedPipelinedPolicy, StaticPipelinedPolicy
from gelato.policies.static import DSSDPolicy, EdgeAutoregressivePolicy, EdgeStreamingPolicy, StaticPolicy

# "static-K" for any K >= 1 (static-5/7/9 are listed): the one spelling of static SD's name.
_STATIC_NAME = re.compile(r"static-(\d+)")

# The policy `generate`, `device` and `api` use unless told otherwise (README, "Results": GELATO keeps drafts
# short where acceptance is low and wins on time and device energy in the modelled clock).
DEFAULT_POLICY = "gelato-improved"


@dataclass(frozen=True)
class PolicySpec:
    factory: Callable[..., DraftPolicy]
    summary: str
    uses_predictor: bool = False  # True: takes predictor=... (required where the summary says so)
    payload_mode: PayloadMode | None = None  # the payload the policy implies; None: the run's
    uses_energy_budget: bool = False  # True: takes e_bar=... (the run's energy budget unless cfg sets one)
    length_arg: str | None = "k"  # the constructor argument that sets the (largest) draft length, if any
    drafts_ahead_of: str | None = None  # the policy this one runs with drafting ahead (for comparisons)


def _static(k: int) -> PolicySpec:
    return PolicySpec(lambda **cfg: StaticPolicy(k=cfg.pop("k", k), **cfg), f"static SD, K={k}")


def _gelato(factory: Callable[..., DraftPolicy], summary: str) -> PolicySpec:
    return PolicySpec(factory, summary, uses_predictor=True, uses_energy_budget=True, length_arg="g_max")


POLICIES: dict[str, PolicySpec] = {
    "static-5": _static(5),
    "static-7": _static(7),
    "static-9": _static(9),
    "dssd": PolicySpec(DSSDPolicy, "DSSD, static K=7, q(x) up and p down at a rejection",
                       payload_mode=PayloadMode.DSSD),
    "edge-streaming": PolicySpec(EdgeStreamingPolicy, "no draft: the edge decodes the answer alone and streams "
                                 "it (the baseline a user runs)", payload_mode=PayloadMode.EDGE_AR, length_arg=None),
    "edge-autoregressive": PolicySpec(EdgeAutoregressivePolicy, "no draft: the edge decodes 1 token/round "
                                      "(the paper-style reference)", payload_mode=PayloadMode.EDGE_AR,
                                      length_arg=None),
    "gelato-paper": _gelato(GelatoPaperPolicy, "GELATO as published (predictor required)"),
    "gelato-outer-only": _gelato(GelatoOuterOnlyPolicy, "GELATO budget, no early exit (predictor required)"),
    "gelato-inner-only": _gelato(GelatoInnerOnlyPolicy, "GELATO entropy bucket, budget g_max, no queue"),
    "gelato-improved": _gelato(GelatoImprovedPolicy, "gelato-improved (ours): online estimates, ratio objective, "
                               "energy price, optimal stopping (predictor required)"),
    "hf-heuristic": PolicySpec(hf_heuristic, "transformers heuristic schedule: start 5, +2 / -1",
                               length_arg=None),
    "hf-confidence": PolicySpec(hf_confidence, "transformers >= 4.45 default: 20 tokens, stop after q < 0.4",
                                length_arg=None),
    "pmin": PolicySpec(PMinPolicy, "llama.cpp --draft-p-min 0.75 (low-confidence token not sent)"),
    "svip": PolicySpec(SVIPPolicy, "SVIP: stop before a token with sqrt(0.15 H) > 0.3"),
    "adaedl": PolicySpec(AdaEDLPolicy, "AdaEDL: stop before a token with 1 - sqrt(0.2 H) < 0.7"),
    "adaptive-goodput": PolicySpec(AdaptiveGoodputPolicy, "SmartSpec-style K = argmax EN(k)/T(k)", True,
                                   length_arg="k_max"),
    "static-5-pipelined": PolicySpec(lambda **cfg: StaticPipelinedPolicy(k=cfg.pop("k", 5), **cfg),
                                     "static SD, K=5, always drafts K+1 ahead while verifying (what fits in the "
                                     "wait)", True, drafts_ahead_of="static-5"),
    "gelato-improved-pipelined": PolicySpec(GelatoImprovedPipelinedPolicy, "gelato-improved (ours) drafting ahead "
                                            "while verifying, depth priced by the energy queue (predictor required)",
                                            uses_predictor=True, uses_energy_budget=True, length_arg="g_max",
                                            drafts_ahead_of="gelato-improved"),
}


def policy_spec(name: str) -> PolicySpec:
    """The registry entry for ``name`` (``static-K`` for any K >= 1); ValueError naming the known ones."""
    if name in POLICIES:
        return POLICIES[name]
    static = _STATIC_NAME.fullmatch(name)
    if static:
        return _static(int(static.group(1)))
    hint = f" (policy names are spelled static-K, e.g. static-{m.group(1) or 4})" if (
        m := re.fullmatch(r"static[\W_]*(\d*)", name, re.IGNORECASE)) else ""
    raise ValueError(f"unknown policy {name!r}{hint}; known: static-K, {', '.join(POLICIES)}")


def draft_length_setting(name: str, draft_length: int | None) -> dict[str, int]:
    """The constructor argument that sets ``name``'s (largest) draft length to ``draft_length`` (empty for
    None); ValueError (one line) for an unknown name, a length below 1, or a policy without one."""
    spec = policy_spec(name)
    if draft_length is None:
        return {}
    if spec.length_arg is None:
        named = ", ".join(n for n, s in POLICIES.items() if s.length_arg and not _STATIC_NAME.fullmatch(n))
        raise ValueError(f"policy {name!r} has no draft length to set; policies with one: static-K, {named}")
    if draft_length < 1:
        raise ValueError(f"a draft length must be >= 1, got {draft_length}")
    return {spec.length_arg: draft_length}


def make_policy(name: str, predictor: Any = None, energy_budget: float | None = None,
                draft_length: int | None = None, **cfg: Any) -> DraftPolicy:
    """Build the policy registered as ``name`` with constructor arguments ``cfg`` (see the module docstring
    for ``draft_length``, ``predictor`` and ``energy_budget``). ValueError (one line) for an unknown name, or
    a draft length below 1 or for a policy without one (:func:`draft_length_setting`)."""
    spec = policy_spec(name)
    cfg.update(draft_length_setting(name, draft_length))
    if spec.uses_predictor and predictor is not None:
        cfg["predictor"] = predictor
    if spec.uses_energy_budget and energy_budget is not None:
        cfg.setdefault("e_bar", energy_budget)
    return spec.factory(**cfg)

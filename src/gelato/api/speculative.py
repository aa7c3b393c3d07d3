"""Per-request speculation: the request's ``speculative`` object over the server's defaults, as objects.

``num_draft_tokens`` is the policy's draft length by the registry's one rule
(:func:`gelato.policies.registry.draft_length_setting`): K for the fixed-length policies, the largest draft
length for the adaptive ones (``g_max`` / ``k_max``), refused for policies without one; None keeps the
policy's own. ``e_bar`` is the GELATO policies' device energy budget per round and is refused for policies
without one. The edge's largest draft per round is the round loop's ceiling, not a setting here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gelato.api.errors import bad_request
from gelato.api.schemas import SpeculativeSettings
from gelato.constants import E_BAR_J
from gelato.decoding.policy import DraftPolicy
from gelato.policies.registry import POLICIES, draft_length_setting, make_policy, policy_spec

# the GELATO family's own default energy budget per round (the paper's Table I value)
_DEFAULT_E_BAR = {name: E_BAR_J for name, spec in POLICIES.items() if spec.uses_energy_budget}
_HAS_E_BAR = frozenset(_DEFAULT_E_BAR)


@dataclass(frozen=True)
class Speculation:
    """Resolved settings of one request."""

    policy: str
    num_draft_tokens: int | None
    e_bar: float | None
    payload: str

    def as_dict(self) -> dict:
        return {"policy": self.policy, "num_draft_tokens": self.num_draft_tokens, "e_bar": self.e_bar,
                "payload": self.payload}


def resolve(request: SpeculativeSettings | None, default: Speculation) -> Speculation:
    """The request's settings where given, the server's elsewhere; 400 naming the field if invalid."""
    r = request or SpeculativeSettings()
    policy = r.policy if r.policy is not None else default.policy
    try:
        policy_spec(policy)
    except ValueError as exc:
        raise bad_request(str(exc), param="speculative.policy") from None
    e_bar = None
    if policy in _HAS_E_BAR:  # the request's, else the server's, else the policy's own default
        e_bar = next(x for x in (r.e_bar, default.e_bar, _DEFAULT_E_BAR[policy]) if x is not None)
    if r.e_bar is not None and policy not in _HAS_E_BAR:
        raise bad_request(f"policy {policy!r} has no energy budget; e_bar applies to "
                          f"{', '.join(sorted(_HAS_E_BAR))}", param="speculative.e_bar")
    k = r.num_draft_tokens if r.num_draft_tokens is not None else default.num_draft_tokens
    try:
        draft_length_setting(policy, k)
    except ValueError as exc:
        raise bad_request(str(exc), param="speculative.num_draft_tokens") from None
    return Speculation(policy, k, e_bar, r.payload or default.payload)


def build_policy(spec: Speculation, predictor) -> DraftPolicy:
    """A fresh policy object for one request (policies keep per-generation state), by the registry's builder."""
    try:
        return make_policy(spec.policy, predictor=predictor, energy_budget=spec.e_bar,
                           draft_length=spec.num_draft_tokens)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"policy {spec.policy!r} refused its settings: {exc}", param="speculative") from None

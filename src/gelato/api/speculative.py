"""Per-request speculation: the request's ``speculative`` object over the server's defaults, as objects.

``num_draft_tokens`` overrides K for the fixed-length policies and is the largest draft length for the
adaptive ones (their own ``g_max`` / ``k_max`` where they have one, else a cap on the budget); None keeps the
policy's own (K of ``static-K``, GELATO's ``g_max``). ``e_bar`` is the
GELATO policies' device energy budget per round and is refused for policies without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gelato.api.errors import bad_request
from gelato.api.schemas import SpeculativeSettings
from gelato.constants import E_BAR_J
from gelato.decoding.policy import DraftPolicy
from gelato.policies.cap import BudgetCap
from gelato.policies.registry import POLICIES, make_policy, policy_spec

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
    return Speculation(policy, k, e_bar, r.payload or default.payload)


def build_policy(spec: Speculation, predictor, max_draft_tokens: int | None = None) -> DraftPolicy:
    """A fresh policy object for one request (policies keep per-generation state)."""
    cfg: dict = {"predictor": predictor}
    arg = policy_spec(spec.policy).length_arg
    if arg is not None and spec.num_draft_tokens is not None:
        cfg[arg] = spec.num_draft_tokens
    if spec.e_bar is not None:
        cfg["e_bar"] = spec.e_bar
    try:
        policy = make_policy(spec.policy, **cfg)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"policy {spec.policy!r} refused its settings: {exc}", param="speculative") from None
    cap = spec.num_draft_tokens if arg is None else None
    if max_draft_tokens is not None:
        cap = min(cap or max_draft_tokens, max_draft_tokens)
    return BudgetCap(policy, cap) if cap is not None else policy

"""Draft-length policies: a per-round budget, a per-token keep-drafting decision, an update per round."""

from gelato.policies.base import DraftPolicy, RoundContext
from gelato.policies.static import StaticPolicy

__all__ = ["DraftPolicy", "RoundContext", "StaticPolicy"]

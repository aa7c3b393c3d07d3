"""Generation: the one round loop, the models as its parts, and the one assembly of the pair."""

from gelato.generation.adapters import DraftModelProposer, TargetModelVerifier
from gelato.generation.loop import GenerationResult, RoundClock, Verifier, generate, target_only_generate
from gelato.generation.pair import (
                                    draft_proposer,
                                    generate_speculative,
                                    generate_target_only,
                                    local_pair,
                                    target_verifier,
)

__all__ = ["DraftModelProposer", "GenerationResult", "RoundClock", "TargetModelVerifier", "Verifier",
           "draft_proposer", "generate", "generate_speculative", "generate_target_only", "local_pair",
           "target_only_generate", "target_verifier"]

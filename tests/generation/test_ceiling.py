"""The round loop's one draft-length ceiling (tokens left, the proposer's reach, the verifier's largest draft)
and the verifier's measurements, which the loop puts on each round's record (also verifying in a thread)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import RoundMeasurement
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import draft_ceiling, target_only_generate
from gelato.models import CachedCausalLM
from gelato.policies import StaticPolicy
from tests.conftest import random_prompts

GREEDY = SamplingParams()
PROMPTS = random_prompts(3, seed=11)
MAX_NEW = 30


class Greedy(StaticPolicy):
    """Asks for ``k`` tokens every round (and for ``depth`` ahead); remembers every ceiling it was shown."""

    def __init__(self, k: int, depth: int = 0) -> None:
        super().__init__(k)
        self.depth = depth
        self.seen: list[int] = []

    def budget(self, ctx) -> int:
        self.seen.append(ctx.max_budget)
        return super().budget(ctx)

    def predraft(self, ctx, draft) -> int:
        return self.depth


class Bounded(TargetModelVerifier):
    """An in-process verifier with a largest draft, measuring each round as a networked one does."""

    def __init__(self, model, max_draft: int | None) -> None:
        super().__init__(CachedCausalLM(model), GREEDY)
        self.max_draft = max_draft
        self.calls = 0

    def verify(self, committed, draft):
        assert self.max_draft is None or len(draft.tokens) <= self.max_draft  # the edge would refuse more
        self.calls += 1
        return replace(super().verify(committed, draft), measured=RoundMeasurement(up_bytes=self.calls,
                                                                                 down_bytes=len(draft.tokens)))


class Reaching(DraftModelProposer):
    def __init__(self, model, reach: int | None) -> None:
        super().__init__(CachedCausalLM(model), GREEDY)
        self.reach = reach


def test_the_ceiling_is_the_least_bound():
    assert draft_ceiling(9, None, None) == 9
    assert draft_ceiling(9, 4, None) == 4 and draft_ceiling(9, None, 3) == 3 and draft_ceiling(2, 4, 3) == 2


@pytest.mark.parametrize("reach, max_draft, threaded", [(None, 3, False), (4, None, False), (5, 2, True),
                                                        (None, None, True)])
def test_loop_clips_to_the_ceiling_and_stays_lossless(tiny_drafts, tiny_target, reach, max_draft, threaded):
    tiny_draft = tiny_drafts["noisy"]
    target = CachedCausalLM(tiny_target)
    for prompt in PROMPTS:
        target.reset()
        reference = target_only_generate(target, prompt, GREEDY, MAX_NEW).token_ids
        policy = Greedy(8, depth=2 if threaded else 0)  # asks for more than any bound
        verifier = Bounded(tiny_target, max_draft)
        result = generate(prompt, Reaching(tiny_draft, reach), verifier, policy, MAX_NEW,
                          background_verify=threaded)
        assert result.token_ids == reference
        bound = min(x for x in (8, reach, max_draft) if x is not None)
        for record, seen in zip(result.rounds, policy.seen):
            left = MAX_NEW - (record.start - len(prompt)) - 1
            assert seen == min(x for x in (left, reach, max_draft) if x is not None)  # what the policy reads
            assert record.budget == min(bound, left)
            assert record.predrafted <= max(0, min(x for x in (left, reach) if x is not None) - record.sent)
        # every round's measurement is on its own record, in order, also with verification in a thread
        assert [r.measured.up_bytes for r in result.rounds] == list(range(1, len(result.rounds) + 1))
        assert all(r.measured.down_bytes == r.sent for r in result.rounds)


def test_in_process_rounds_have_no_measurement(tiny_drafts, tiny_target):
    result = generate(PROMPTS[0], DraftModelProposer(CachedCausalLM(tiny_drafts["noisy"]), GREEDY),
                      TargetModelVerifier(CachedCausalLM(tiny_target), GREEDY), StaticPolicy(3), 12)
    assert result.rounds and all(r.measured is None for r in result.rounds)

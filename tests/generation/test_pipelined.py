"""Drafting ahead in the round loop: lossless (greedy equality, also with verification in a thread), the plain
rounds when nothing is drafted ahead, and pre-drafts that really become the next draft."""

from __future__ import annotations

import random

import pytest

from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import DraftStep, StopDecision
from gelato.experiments.runner import run_policy, synthetic_prompt_runs
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.generation.loop import target_only_generate
from gelato.models import CachedCausalLM
from gelato.policies import StaticPolicy
from gelato.system.config import SystemConfig
from tests.conftest import random_prompts

GREEDY = SamplingParams()
PROMPTS = random_prompts(20, seed=5)
MAX_NEW = 24


class RandomStops(StaticPolicy):
    """Static K with an optional random stop hook; never drafts ahead (the default ``predraft``)."""

    def __init__(self, k: int, seed: int | None = None) -> None:
        super().__init__(k)
        self.rng = random.Random(seed) if seed is not None else None

    def keep_drafting(self, step: DraftStep) -> StopDecision:
        if self.rng is None:
            return StopDecision.CONTINUE
        return self.rng.choice([StopDecision.CONTINUE] * 3 + [StopDecision.STOP_AFTER, StopDecision.STOP_BEFORE])


class AheadPolicy(RandomStops):
    """Static K, pre-drafting ``depth`` tokens, with an optional random stop hook."""

    def __init__(self, k: int, depth: int, seed: int | None = None) -> None:
        super().__init__(k, seed)
        self.depth = depth

    def predraft(self, ctx, draft) -> int:
        return self.depth


@pytest.fixture(scope="module")
def references(tiny_target):
    target = CachedCausalLM(tiny_target)
    out = []
    for prompt in PROMPTS:
        target.reset()
        out.append(target_only_generate(target, prompt, GREEDY, MAX_NEW).token_ids)
    return out


def run(draft_model, target_model, prompt, policy, threaded: bool = False):
    proposer = DraftModelProposer(CachedCausalLM(draft_model), GREEDY)
    verifier = TargetModelVerifier(CachedCausalLM(target_model), GREEDY)
    return generate(prompt, proposer, verifier, policy, MAX_NEW, background_verify=threaded)


# the fast lane (-m "not slow") keeps one case of the grid, the partly accepting draft; CI runs them all
@pytest.mark.parametrize("pair,k,depth,stops", [
    pytest.param(pair, k, depth, stops, id=f"{k}-{depth}-{stops}-{pair}",
                 marks=() if (pair, k) == ("noisy", 3) else pytest.mark.slow)
    for pair in ("unrelated", "noisy", "copy")
    for k, depth, stops in ((1, 3, None), (3, 4, None), (4, 2, 7), (2, 6, 9))])
def test_greedy_equality_with_target_only(tiny_target, tiny_drafts, references, pair, k, depth, stops):
    carried = 0
    for prompt, ref in zip(PROMPTS, references):
        result = run(tiny_drafts[pair], tiny_target, prompt, AheadPolicy(k, depth, stops))
        assert result.token_ids == ref, f"prompt {prompt}: pipelined SD diverged from target-only"
        carried += sum(r.carried for r in result.rounds)
    if pair == "copy":
        assert carried > 0, "an exact-copy draft must have its pre-drafts reused"


@pytest.mark.parametrize("pair", ["noisy", "copy"])
def test_greedy_equality_with_verification_in_a_thread(tiny_target, tiny_drafts, references, pair):
    carried = 0
    for prompt, ref in zip(PROMPTS[:8], references[:8]):
        result = run(tiny_drafts[pair], tiny_target, prompt, AheadPolicy(3, 5), threaded=True)
        assert result.token_ids == ref
        carried += sum(r.carried for r in result.rounds)
    if pair == "copy":
        assert carried > 0


def test_copy_draft_reuses_every_predraft(tiny_target, references):
    """An exact copy: every pre-draft is usable, so after the first round no token is drafted fresh."""
    result = run(tiny_target, tiny_target, PROMPTS[0], AheadPolicy(3, 4))
    assert result.token_ids == references[0]
    middle = result.rounds[1:-1]
    assert middle and all(r.carried == min(3, r.budget) for r in middle)


@pytest.mark.parametrize("background", [False, True])
def test_depth_zero_gives_the_plain_rounds(background):
    """Asked to draft 0 ahead: the same rounds, charges and output as a policy that never drafts ahead, and no
    round records a pre-draft, whether verification may run in the background or not."""
    def once(policy, background_verify):
        clock = SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(2)
        rows = []
        for run in synthetic_prompt_runs(seed=1):
            gen = generate(run.prompt_ids, run.proposer, run.verifier, policy, 64, clock=clock,
                           max_rounds=40, background_verify=background_verify)
            rows.append((gen.token_ids, [(r.tokens, r.predrafted, r.carried, r.charge) for r in gen.rounds]))
            if len(rows) == 3:
                return rows

    ahead = once(AheadPolicy(5, 0, seed=4), background)
    assert ahead == once(RandomStops(5, seed=4), False)
    assert all(p == c == 0 for _, rounds in ahead for _, p, c, _ in rounds)


def test_synthetic_predrafts_are_used_about_as_often_as_a_full_accept_and_a_match():
    """Paper regime, K = 5, 6 ahead: usable when 5 tokens and the bonus match (about 0.9^6 = 0.53)."""
    from gelato.policies.registry import make_policy

    clock = SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(0)
    result = run_policy(make_policy("static-5-pipelined"), clock, synthetic_prompt_runs(seed=0), 2000)
    share = result.summary["predraft_used_rounds"] / result.summary["rounds"]
    assert 0.45 < share < 0.62
    assert result.summary["carried"] > 0
    plain = run_policy(StaticPolicy(5), SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").build_clock(0),
                       synthetic_prompt_runs(seed=0), 2000)
    assert result.summary["tokens_per_second"] > 1.15 * plain.summary["tokens_per_second"]
    assert result.summary["mean_round_energy"] > plain.summary["mean_round_energy"]  # pre-drafts cost energy


def test_the_clock_is_charged_with_the_whole_record():
    """The clock sees the round as the policy and the caller do, measured phases included (the testbed scales
    its modelled draft cost by the wall time of the records it was charged with)."""

    class Keeper:
        def __init__(self):
            self.seen = []

        def begin_prompt(self):
            pass

        def begin_round(self, ctx):
            return None

        def charge(self, record, draft, verdict, predrafted=0):
            self.seen.append(record)

    keeper = Keeper()
    run = next(synthetic_prompt_runs(seed=2))
    result = generate(run.prompt_ids, run.proposer, run.verifier, AheadPolicy(4, 2), 48, clock=keeper)
    assert [r.wall for r in keeper.seen] == [r.wall for r in result.rounds]
    assert [r.tokens for r in keeper.seen] == [r.tokens for r in result.rounds]
    assert all(r.wall.verify > 0 for r in keeper.seen)

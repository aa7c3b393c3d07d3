"""The testbed device's modelled replay: a :class:`Recorder` keeps each round's inputs and where each prompt began,
and charging them to a clock afterwards gives exactly what that clock charges live (no model or process needed:
the synthetic sessions drive the real round loop)."""

from __future__ import annotations

import itertools

import pytest

from gelato.experiments.runner import synthetic_prompt_runs
from gelato.generation import generate
from gelato.policies.registry import make_policy
from gelato.system.config import SystemConfig
from gelato.testbed.device import Recorder


def _clock():
    return SystemConfig.paper(bandwidth_mhz=5, payload_mode="compact").model_copy(
        update={"accounting": "sequential"}).build_clock(3)


def _prompts(clock, policy_name: str, n: int = 3):
    """``n`` synthetic prompts, 40 tokens each, one policy across them, under ``clock``."""
    policy = make_policy(policy_name)
    return [generate(s.prompt_ids, s.proposer, s.verifier, policy, 40, clock=clock)
            for s in itertools.islice(synthetic_prompt_runs(seed=5), n)]


@pytest.mark.parametrize("policy", ["static-3", "static-5-pipelined", "edge-autoregressive"])
def test_replay_charges_what_the_clock_charges_live(policy):
    live = [r.charge for g in _prompts(_clock(), policy) for r in g.rounds]
    recorder = Recorder(keep_q=False)  # one recorder over all three prompts: their boundaries are recorded
    _prompts(recorder, policy)
    starts = [i for i, (starts_prompt, *_) in enumerate(recorder.rounds) if starts_prompt]
    assert len(starts) == 3 and starts[0] == 0
    replayed = recorder.replay(_clock())
    assert replayed == live
    assert {c.n_pending for c in live} > {1}  # the draft-cache rule was exercised, not only a prompt's first round

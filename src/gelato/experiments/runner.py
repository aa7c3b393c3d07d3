"""Run a policy for a fixed number of rounds over a stream of prompt runs, in the modelled clock.

A *prompt run* (:class:`PromptRun`) is one prompt with its proposer and verifier (live models, a replayed
trace, or the synthetic source); the context is reset between prompt runs (one GSM8K answer each, as in the
paper). The policy and the clock persist across them: the energy queue spans the whole run.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gelato.decoding.payload_modes import DEFAULT_PAYLOAD, PayloadMode
from gelato.decoding.policy import DraftPolicy
from gelato.decoding.proposer import Proposer
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import RoundRecord
from gelato.experiments.synthetic import SyntheticProposer, SyntheticSource, SyntheticVerifier
from gelato.experiments.trace import Trace, TraceProposer, TraceVerifier
from gelato.generation import RoundClock, Verifier, generate, local_pair
from gelato.system.summary import summarize_charged_rounds


@dataclass
class PromptRun:
    """One prompt of a run with the proposer and verifier that answer it (live, replayed or synthetic)."""

    prompt_ids: list[int]
    proposer: Proposer
    verifier: Verifier
    max_new_tokens: int
    eos_token_id: int | None = None
    prompt_id: str = ""


def trace_prompt_runs(trace: Trace, top_p: float | None = None) -> Iterator[PromptRun]:
    """Cycle through a trace's prompts forever."""
    top_ps = trace.header.get("top_ps", [])
    for pt in itertools.cycle(trace.prompts):
        yield PromptRun(pt.prompt_ids, TraceProposer(pt, top_p, top_ps), TraceVerifier(pt), pt.length,
                      trace.header.get("eos_token_id"), pt.prompt_id)


def synthetic_prompt_runs(seed: int = 0, top_p: float = 0.99995, context: int = 100,
                       answer_tokens: int = 256) -> Iterator[PromptRun]:
    """The paper's regime: a 100-token context reset every 256 generated tokens."""
    source = SyntheticSource(seed=seed, top_p=top_p)
    for i in itertools.count():
        yield PromptRun([0] * context, SyntheticProposer(source), SyntheticVerifier(source), answer_tokens,
                      prompt_id=f"synthetic-{i}")


def live_prompt_runs(draft, target, prompts: Sequence[tuple[str, Sequence[int]]], params: SamplingParams,
                  max_new_tokens: int, eos_token_id: int | None, seed: int = 0,
                  vocab_size: int | None = None, cycle: bool = True,
                  payload: PayloadMode | str = DEFAULT_PAYLOAD) -> Iterator[PromptRun]:
    """Real models; one KV cache pair reused (re-synced per prompt by the common-prefix crop); the draft proposes
    what ``payload`` sends (the run's clock bills it)."""
    proposer, verifier = local_pair(draft, target, params, seed, vocab_size, payload)
    for pid, ids in (itertools.cycle(prompts) if cycle else prompts):
        yield PromptRun(list(ids), proposer, verifier, max_new_tokens, eos_token_id, pid)


@dataclass
class RunResult:
    policy: str
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    texts: list[tuple[str, list[int]]] = field(default_factory=list)  # (prompt id, generated ids) per prompt run

    def write(self, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = name or self.policy
        rounds_path, summary_path = out / f"{stem}.rounds.jsonl", out / f"{stem}.summary.json"
        with rounds_path.open("w") as f:
            for row in self.rows:
                f.write(json.dumps(row) + "\n")
        summary_path.write_text(json.dumps(self.summary, indent=2))
        return rounds_path, summary_path


def run_policy(policy: DraftPolicy, clock: RoundClock, prompt_runs: Iterable[PromptRun], rounds: int,
               e_bar: float | None = None, on_round: Callable[[RoundRecord], None] | None = None) -> RunResult:
    """Drive ``policy`` for exactly ``rounds`` rounds (prompt runs are consumed as needed)."""
    result = RunResult(policy=getattr(policy, "name", type(policy).__name__))
    tokens = 0

    def record_row(record: RoundRecord) -> None:
        result.rows.append(record.as_row(**{f"policy_{k}": v for k, v in policy.state().items()}))
        if on_round is not None:
            on_round(record)

    for run in prompt_runs:
        if len(result.rows) >= rounds:
            break
        gen = generate(run.prompt_ids, run.proposer, run.verifier, policy, run.max_new_tokens, run.eos_token_id,
                       clock, round_offset=len(result.rows), on_round=record_row, max_rounds=rounds - len(result.rows))
        tokens += len(gen.token_ids)
        result.texts.append((run.prompt_id, gen.token_ids))
    result.summary = {"policy": result.policy, **summarize_charged_rounds(result.rows, tokens, e_bar)}
    return result


"""Execute a :class:`RunConfig`: build the clock, the policy and the prompt runs, run, write the outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from gelato.decoding.sampling import SamplingParams
from gelato.experiments.config import RunConfig
from gelato.experiments.runner import (
    PromptRun,
    RunResult,
    live_prompt_runs,
    run_policy,
    synthetic_prompt_runs,
    trace_prompt_runs,
)
from gelato.experiments.trace import Trace
from gelato.policies.registry import make_policy


def load_prompt_ids(cfg: RunConfig, tokenizer) -> list[tuple[str, list[int]]]:
    from gelato.data.workloads import format_for_pair, load_gsm8k, load_humaneval, load_spec_bench
    from gelato.models.chat import encode_prompt, has_chat_template

    loader = {"gsm8k": lambda: load_gsm8k("test", cfg.data_dir, cfg.prompts),
              "spec-bench": lambda: load_spec_bench(cfg.data_dir, limit=cfg.prompts),
              "humaneval": lambda: load_humaneval(cfg.data_dir, cfg.prompts)}[cfg.workload]
    if has_chat_template(tokenizer):  # a chat model: each prompt is one user turn of its template
        return [(p.id, encode_prompt(tokenizer, p.text)) for p in loader()]
    return [(p.id, tokenizer(format_for_pair(p, cfg.pair))["input_ids"]) for p in loader()]


def prompt_runs_for(cfg: RunConfig) -> Iterator[PromptRun]:
    if cfg.source == "synthetic":
        return synthetic_prompt_runs(cfg.seed, cfg.payload_top_p, answer_tokens=cfg.max_new_tokens)
    if cfg.source == "trace":
        trace = Trace.load(cfg.trace)
        top_p = cfg.payload_top_p if cfg.payload_top_p in trace.header.get("top_ps", []) else None
        return trace_prompt_runs(trace, top_p)
    from gelato.models import load_pair, shared_vocab_size
    from gelato.models.pairs import resolve_pair_dirs

    draft_dir, target_dir = resolve_pair_dirs(cfg.draft, cfg.target)
    draft, target, tok = load_pair(draft_dir, target_dir)
    params = SamplingParams(cfg.temperature, cfg.top_k, cfg.sampling_top_p)
    return live_prompt_runs(draft, target, load_prompt_ids(cfg, tok), params, cfg.max_new_tokens, tok.eos_token_id,
                         cfg.seed, shared_vocab_size(draft, target), payload=cfg.payload_mode())


def execute(cfg: RunConfig, on_round: Callable | None = None, write: bool = True) -> RunResult:
    clock = cfg.system_config().build_clock(cfg.seed)
    # a replayed round cannot draft past the recorded rollouts: TraceProposer.reach, the round loop's ceiling
    policy = make_policy(cfg.policy, predictor=clock, energy_budget=cfg.e_bar, **cfg.policy_args)
    result = run_policy(policy, clock, prompt_runs_for(cfg), cfg.rounds, cfg.e_bar, on_round)
    result.summary["config"] = cfg.model_dump(mode="json")
    result.summary["clock"] = clock.describe()
    if write:
        out = Path(cfg.out or Path("runs") / cfg.name)
        result.write(out, cfg.policy)
    return result

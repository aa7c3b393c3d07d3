"""The main job: GELATO against static SD and edge-only decoding on the default pair, in the modelled clock.

Real models produce every token. Greedy decoding is exact under trace replay, so the demo generates
once: it records a greedy trace (the target's answer and the draft's rollout of the largest draft any
policy asks for at every position) and replays every policy from it. Two policies also run live on the
real models, and their tokens must equal the trace's (the lossless check). The paper's system model
(Table I device, Rayleigh uplink, constant verification time) charges time and device energy.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gelato.decoding.sampling import SamplingParams
from gelato.experiments.config import RunConfig
from gelato.experiments.runner import BudgetCap, RunResult, Session, live_sessions, run_policy
from gelato.experiments.trace import Trace, TraceProposer, TraceVerifier
from gelato.experiments.trace_fast import record_trace_fast
from gelato.models.chat import stop_token_id
from gelato.policies.registry import make_policy, policy_spec

DEMO_POLICIES = ("gelato-improved", "gelato-paper", "static-5", "static-7", "static-9", "dssd", "edge-autoregressive")
LIVE_CHECK_POLICIES = ("gelato-improved", "static-5")
DEMO_K_MAX = 15  # GELATO's g_max: the largest draft any demo policy asks for (static-9 asks 9)


@dataclass
class DemoOutcome:
    results: dict[str, RunResult]
    lossless: bool  # the live runs produced exactly the trace's (the target's own) tokens
    figure: Path | None
    table_csv: Path
    trace: Trace | None = None
    live_checked: tuple[str, ...] = ()
    replay_matches_live: bool | None = None  # the live runs' rounds equal the replayed ones


def replay_sessions(trace: Trace, payload_top_p: float | None = None) -> Iterator[Session]:
    """Each recorded prompt once, replayed with no model calls (drafts carry q's top-p support sizes
    when ``payload_top_p`` is one the trace recorded)."""
    top_ps = trace.header.get("top_ps", [])
    top_p = payload_top_p if payload_top_p in top_ps else None
    for pt in trace.prompts:
        yield Session(pt.prompt_ids, TraceProposer(pt, top_p, top_ps), TraceVerifier(pt), pt.length,
                      trace.header.get("eos_token_id"), pt.prompt_id)


def _run(name: str, sessions, cfg_kw: dict, e_bar: float, seed: int, on_round, cap: int | None) -> RunResult:
    cfg = RunConfig(source="live", policy=name, **cfg_kw)
    if policy_spec(name).payload_mode is not None:  # DSSD and edge-only decoding keep their own payload
        cfg = cfg.model_copy(update={"payload": None})
    clock = cfg.system_config().build_clock(seed)
    policy = make_policy(name, predictor=clock, energy_budget=e_bar)
    if cap is not None:
        policy = BudgetCap(policy, cap)
    return run_policy(policy, clock, sessions, rounds=10**9, e_bar=e_bar, on_round=on_round)


def run_demo(draft, target, tokenizer, prompts: Sequence[tuple[str, list[int]]], out_dir: Path,
             policies: Sequence[str] = DEMO_POLICIES, bandwidth_mhz: float = 1.0, t_verify_ms: float = 100.0,
             e_bar: float = 1.2, max_new_tokens: int = 128, seed: int = 0, vocab_size: int | None = None,
             on_round: Callable | None = None, on_policy: Callable[[str], None] | None = None,
             live_check: Sequence[str] = LIVE_CHECK_POLICIES, live_check_prompts: int = 1,
             k_max: int = DEMO_K_MAX, payload: str | None = "compact") -> DemoOutcome:
    """Record one greedy trace, replay every policy from it, check ``live_check`` policies live.

    ``payload``: the uplink of policies without one of their own (``compact``: token ids only, what gelato
    sends under greedy decoding; ``paper_topp``: the paper's top-p probabilities; None: the system default)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stop = stop_token_id(tokenizer)
    if on_policy is not None:
        on_policy("greedy trace (one generation)")
    trace = record_trace_fast(draft, target, prompts, k_max=k_max, max_new_tokens=max_new_tokens,
                              eos_token_id=stop, vocab_size=vocab_size,
                              progress=(lambda: on_round(None)) if on_round else None)
    trace.save(out_dir / "demo.trace.npz")
    cfg_kw = dict(bandwidth_mhz=bandwidth_mhz, t_verify_ms=t_verify_ms, e_bar=e_bar, seed=seed,
                  max_new_tokens=max_new_tokens, payload=payload)
    results: dict[str, RunResult] = {}
    for name in policies:
        if on_policy is not None:
            on_policy(f"{name} (replay)")
        payload_top_p = RunConfig(source="live", policy=name, **cfg_kw).payload_top_p
        result = _run(name, replay_sessions(trace, payload_top_p), cfg_kw, e_bar, seed, on_round, k_max)
        result.write(out_dir, name)
        results[name] = result
    reference = [pt.target_tokens.tolist() for pt in trace.prompts[:live_check_prompts]]
    lossless, replay_ok = True, True
    for name in live_check:
        if on_policy is not None:
            on_policy(f"{name} (live, lossless check)")
        sessions = live_sessions(draft, target, prompts[:live_check_prompts], SamplingParams(), max_new_tokens, stop,
                                 seed, vocab_size, cycle=False)
        live = _run(name, sessions, cfg_kw, e_bar, seed, on_round, None)
        lossless &= [ids for _, ids in live.texts] == reference
        if name in results:
            replayed = results[name].rows[:len(live.rows)]
            replay_ok &= [(r["budget"], r["sent"], r["accepted"]) for r in live.rows] == \
                         [(r["budget"], r["sent"], r["accepted"]) for r in replayed]
    table_csv = out_dir / "demo_summary.csv"
    fields = ["policy", "tokens_per_second", "joules_per_token", "mean_acceptance_length", "draft_acceptance_rate",
              "mean_round_energy", "e_bar", "energy_constraint_met", "uplink_bytes_per_token", "rounds", "tokens"]
    with table_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in results.values():
            writer.writerow(r.summary)
    figure = plot_demo(results, out_dir / "demo.png", bandwidth_mhz)
    return DemoOutcome(results, lossless, figure, table_csv, trace, tuple(live_check),
                       replay_ok if live_check else None)


def plot_demo(results: dict[str, RunResult], path: Path, bandwidth_mhz: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    colors = ["tab:green" if n.startswith("gelato") else "tab:gray" for n in names]
    axes[0].bar(names, [results[n].summary["tokens_per_second"] for n in names], color=colors)
    axes[0].set_ylabel("tokens/s (modelled)")
    axes[1].bar(names, [results[n].summary["joules_per_token"] for n in names], color=colors)
    axes[1].set_ylabel("device J/token")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=25)
    for n in names:
        rows = results[n].rows
        if rows and "policy_queue" in rows[0]:
            peak_q = max(r["policy_queue"] for r in rows)
            axes[2].plot([r["sent"] for r in rows], lw=1, label=f"{n}: tokens sent (max Q {peak_q:.2f} J)")
    axes[2].set_xlabel("round")
    axes[2].set_ylabel("draft tokens sent per round")
    if axes[2].get_lines():
        axes[2].legend(fontsize=8)
    fig.suptitle(f"gelato demo: paper system model, {bandwidth_mhz:g} MHz uplink")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

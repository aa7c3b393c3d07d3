"""The main job: GELATO against static SD and edge-only decoding on the default pair, in the modelled clock.

Real models produce every token. Greedy decoding is exact under trace replay, so the demo generates
once: it records a greedy trace (the target's answer and the draft's rollout of the largest draft any
policy asks for at every position) and replays every policy from it. Two policies also run live on the
real models, and their tokens must equal the trace's (the lossless check). The paper's system model
(Table I device, Rayleigh uplink, constant verification time) charges time and device energy; the device
profile (:data:`DEVICE_PROFILES`) says which draft the device is charged for.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gelato.constants import E_BAR_J, G_MAX
from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.sampling import SamplingParams
from gelato.experiments.config import RunConfig
from gelato.experiments.runner import PromptRun, RunResult, live_prompt_runs, run_policy
from gelato.experiments.trace import Trace, TraceProposer, TraceVerifier
from gelato.experiments.trace_fast import record_trace_fast
from gelato.models.chat import stop_token_id
from gelato.policies.registry import make_policy, policy_spec
from gelato.system.compute import ModelDims
from gelato.system.config import ComputeSpec
from gelato.system.presets import PAPER

DEMO_POLICIES = ("gelato-improved", "gelato-paper", "static-1", "static-2", "static-5", "static-9", "dssd",
                 "edge-streaming", "edge-autoregressive")
BASELINE = "edge-streaming"  # what a user runs without gelato: the edge streams its own answer
# What the simulated device is charged for drafting: the paper's Table I phone (its FLOP/s and power) running
# the draft the demo really uses, or running the paper's Qwen2.5-0.5B draft (the paper's own charging).
DEVICE_PROFILES = {"phone-own-draft": "the paper's phone (Table I) running this draft",
                   "paper": "the paper's phone (Table I) charged for its Qwen2.5-0.5B draft"}
DEFAULT_DEVICE_PROFILE = "phone-own-draft"
LIVE_CHECK_POLICIES = ("gelato-improved", "static-5")
DEMO_K_MAX = G_MAX  # GELATO's g_max: the largest draft any demo policy asks for (static-9 asks 9)


@dataclass
class DemoOutcome:
    results: dict[str, RunResult]
    lossless: bool  # the live runs produced exactly the trace's (the target's own) tokens
    figure: Path | None
    table_csv: Path
    trace: Trace | None = None
    live_checked: tuple[str, ...] = ()
    replay_matches_live: bool | None = None  # the live runs' rounds equal the replayed ones


def replay_prompt_runs(trace: Trace, payload_top_p: float | None = None) -> Iterator[PromptRun]:
    """Each recorded prompt once, replayed with no model calls (drafts carry q's top-p support sizes
    when ``payload_top_p`` is one the trace recorded)."""
    top_ps = trace.header.get("top_ps", [])
    top_p = payload_top_p if payload_top_p in top_ps else None
    for pt in trace.prompts:
        yield PromptRun(pt.prompt_ids, TraceProposer(pt, top_p, top_ps), TraceVerifier(pt), pt.length,
                      trace.header.get("eos_token_id"), pt.prompt_id)


def _run(name: str, prompt_runs, cfg_kw: dict, e_bar: float, seed: int, on_round,
         draft_dims: ModelDims | None = None) -> RunResult:
    """``name`` over ``prompt_runs``; a replayed round drafts at most the trace's rollout (``TraceProposer.reach``,
    the round loop's ceiling)."""
    cfg = RunConfig(source="live", policy=name, **cfg_kw)
    if policy_spec(name).payload_mode is not None:  # DSSD and edge-only decoding keep their own payload
        cfg = cfg.model_copy(update={"payload": None})
    system = cfg.system_config()
    if draft_dims is not None:  # charge the draft really used (device profile phone-own-draft)
        dims = (draft_dims.n_layers, draft_dims.d_model, draft_dims.d_ff)
        system = system.model_copy(update={"draft": ComputeSpec(kind="flops", dims=dims,
                                                                flops_per_s=PAPER.flops_per_s)})
    clock = system.build_clock(seed)
    policy = make_policy(name, predictor=clock, energy_budget=e_bar)
    return run_policy(policy, clock, prompt_runs, rounds=10**9, e_bar=e_bar, on_round=on_round)


def run_demo(draft, target, tokenizer, prompts: Sequence[tuple[str, list[int]]], out_dir: Path,
             policies: Sequence[str] = DEMO_POLICIES, bandwidth_mhz: float = 1.0, t_verify_ms: float = 100.0,
             e_bar: float = E_BAR_J, max_new_tokens: int = 128, seed: int = 0, vocab_size: int | None = None,
             on_round: Callable | None = None, on_policy: Callable[[str], None] | None = None,
             live_check: Sequence[str] = LIVE_CHECK_POLICIES, live_check_prompts: int = 1,
             k_max: int = DEMO_K_MAX, payload: PayloadMode | None = PayloadMode.COMPACT,
             device_profile: str = DEFAULT_DEVICE_PROFILE) -> DemoOutcome:
    """Record one greedy trace, replay every policy from it, check ``live_check`` policies live.

    ``payload``: the uplink of policies without one of their own (``compact``: token ids only, what gelato
    sends under greedy decoding; ``paper_topp``: the paper's top-p probabilities; None: the system default).
    ``device_profile``: a key of :data:`DEVICE_PROFILES`."""
    if device_profile not in DEVICE_PROFILES:
        raise ValueError(f"unknown device profile {device_profile!r}; choose {' or '.join(DEVICE_PROFILES)}")
    draft_dims = ModelDims.from_config(draft.config) if device_profile == "phone-own-draft" else None
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
        result = _run(name, replay_prompt_runs(trace, payload_top_p), cfg_kw, e_bar, seed, on_round, draft_dims)
        result.write(out_dir, name)
        results[name] = result
    reference = [pt.target_tokens.tolist() for pt in trace.prompts[:live_check_prompts]]
    lossless, replay_ok = True, True
    for name in live_check:
        if on_policy is not None:
            on_policy(f"{name} (live, lossless check)")
        runs = live_prompt_runs(draft, target, prompts[:live_check_prompts], SamplingParams(), max_new_tokens, stop,
                                seed, vocab_size, cycle=False)
        live = _run(name, runs, cfg_kw, e_bar, seed, on_round, draft_dims)
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
    figure = plot_demo(results, out_dir / "demo.png", f"{bandwidth_mhz:g} MHz uplink, {payload or 'default'} "
                       f"payload, device profile {device_profile}")
    return DemoOutcome(results, lossless, figure, table_csv, trace, tuple(live_check),
                       replay_ok if live_check else None)


def conclusion(results: dict[str, RunResult], e_bar: float) -> str:
    """One sentence computed from the numbers: the fastest policy within the energy budget, how the GELATO
    variants compare with the best fixed draft length, and with no drafting at all: the edge streaming its own
    answer first (what a user runs otherwise), then the paper's per-token edge-only rounds."""
    s = {n: r.summary for n, r in results.items()}
    within = [n for n in s if s[n]["energy_constraint_met"]] or list(s)
    best = max(within, key=lambda n: s[n]["tokens_per_second"])
    parts = [f"fastest within the {e_bar:g} J/round budget: {best} ({s[best]['tokens_per_second']:.2f} tok/s, "
             f"{s[best]['joules_per_token']:.3f} J/token)"]
    statics = [n for n in within if n.startswith("static-")]
    gelato = [n for n in s if n.startswith("gelato")]
    if statics and gelato:
        g = max(gelato, key=lambda n: s[n]["tokens_per_second"])
        st = max(statics, key=lambda n: s[n]["tokens_per_second"])
        dt = s[g]["tokens_per_second"] / s[st]["tokens_per_second"] - 1
        de = s[g]["joules_per_token"] / s[st]["joules_per_token"] - 1 if s[st]["joules_per_token"] else 0.0
        parts.append(f"{g} is {abs(dt):.1%} {'faster' if dt >= 0 else 'slower'} than the best fixed length "
                     f"({st}) at {abs(de):.0%} {'less' if de <= 0 else 'more'} phone energy per token")
    for ref, what in ((BASELINE, "the edge streaming its own answer"),
                      ("edge-autoregressive", "the paper's edge-only rounds")):
        if ref in s and best != ref:
            d = s[best]["tokens_per_second"] / s[ref]["tokens_per_second"] - 1
            parts.append(f"{d:+.0%} tokens/s over {what} ({ref})")
    return "; ".join(parts) + "."


def plot_demo(results: dict[str, RunResult], path: Path, subtitle: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    colors = ["tab:green" if n.startswith("gelato") else "tab:gray" for n in names]
    axes[0].bar(names, [results[n].summary["tokens_per_second"] for n in names], color=colors)
    axes[0].set_ylabel("tokens/s (modelled clock)")
    axes[1].bar(names, [results[n].summary["joules_per_token"] for n in names], color=colors)
    axes[1].set_ylabel("phone J/token (modelled)")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=25)
    for n in names:
        rows = results[n].rows
        if rows and "policy_queue" in rows[0]:
            peak_q = max(r["policy_queue"] for r in rows)
            axes[2].plot([r["sent"] for r in rows], lw=1,
                         label=f"{n} (energy-deficit queue peak {peak_q:.2f} J; 0: never over budget)")
    axes[2].set_xlabel("round")
    axes[2].set_ylabel("draft tokens sent per round (GELATO)")
    if axes[2].get_lines():
        axes[2].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.suptitle(f"gelato demo: real tokens, modelled phone/link/edge (paper system model); {subtitle}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

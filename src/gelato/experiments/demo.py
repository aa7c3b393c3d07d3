"""The main job: GELATO against static SD and edge-only decoding on the built-in pair, in the modelled clock.

Real models produce every token (greedy, so every policy must produce the same text: the demo checks
it); the paper's system model (Table I device, Rayleigh uplink, constant verification time) charges
time and device energy.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gelato.experiments.config import RunConfig
from gelato.experiments.runner import RunResult, live_sessions, run_policy
from gelato.decoding.sampling import SamplingParams
from gelato.policies.registry import make_policy

DEMO_POLICIES = ("gelato-improved", "gelato-paper", "static-5", "static-7", "static-9", "dssd", "edge-autoregressive")


@dataclass
class DemoOutcome:
    results: dict[str, RunResult]
    lossless: bool  # every policy generated exactly the same tokens
    figure: Path | None
    table_csv: Path


def run_demo(draft, target, tokenizer, prompts: Sequence[tuple[str, list[int]]], out_dir: Path,
             policies: Sequence[str] = DEMO_POLICIES, bandwidth_mhz: float = 1.0, t_verify_ms: float = 100.0,
             e_bar: float = 1.2, max_new_tokens: int = 128, seed: int = 0, vocab_size: int | None = None,
             on_round: Callable | None = None, on_policy: Callable[[str], None] | None = None) -> DemoOutcome:
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, RunResult] = {}
    for name in policies:
        if on_policy is not None:
            on_policy(name)
        cfg = RunConfig(source="live", policy=name, bandwidth_mhz=bandwidth_mhz, t_verify_ms=t_verify_ms,
                        e_bar=e_bar, seed=seed, max_new_tokens=max_new_tokens)
        clock = cfg.system_config().build_clock(seed)
        policy = make_policy(name, predictor=clock, energy_budget=e_bar)
        sessions = live_sessions(draft, target, prompts, SamplingParams(), max_new_tokens, tokenizer.eos_token_id,
                                 seed, vocab_size, cycle=False)
        result = run_policy(policy, clock, sessions, rounds=10**9, e_bar=e_bar, on_round=on_round)
        result.write(out_dir, name)
        results[name] = result
    texts = [[ids for _, ids in r.texts] for r in results.values()]
    lossless = all(t == texts[0] for t in texts)
    table_csv = out_dir / "demo_summary.csv"
    fields = ["policy", "tokens_per_second", "joules_per_token", "mean_acceptance_length", "draft_acceptance_rate",
              "mean_round_energy", "e_bar", "energy_constraint_met", "uplink_bytes_per_token", "rounds", "tokens"]
    with table_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in results.values():
            writer.writerow(r.summary)
    return DemoOutcome(results, lossless, plot_demo(results, out_dir / "demo.png", bandwidth_mhz), table_csv)


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
    fig.suptitle(f"gelato demo: built-in gsm8k pair, paper system model, {bandwidth_mhz:g} MHz uplink")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

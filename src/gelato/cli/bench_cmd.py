"""``gelato bench ...``: benchmarks that print figures (never timed tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail, resolve_pair_dirs

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True)


WORKLOADS = ("gsm8k", "chat", "spec-bench", "humaneval")


def workload_prompt_ids(tok, workload: str, n: int, data_dir) -> list[list[int]]:
    """The first ``n`` prompts of ``workload``, encoded as every live run encodes them
    (:func:`gelato.experiments.execute.load_prompt_ids`); ``chat`` is the teacher data's held-out queries."""
    if workload == "chat":
        from gelato.zoo.teacher import load_teacher, teacher_dir

        return [s.prompt.tolist() for s in load_teacher(teacher_dir(data_dir))[1][:n]]
    from gelato.experiments.config import RunConfig
    from gelato.experiments.execute import load_prompt_ids

    cfg = RunConfig(source="live", workload=workload, prompts=n, data_dir=data_dir)
    return [ids for _, ids in load_prompt_ids(cfg, tok)][:n]  # spec-bench counts per category: keep n


@app.command("engine")
def engine(
    draft: Annotated[Optional[str], typer.Option(help="Draft directory or hub id (default: the default pair).")] = None,
    target: Annotated[Optional[str], typer.Option(help="Target directory or hub id.")] = None,
    num_draft_tokens: Annotated[int, typer.Option("--num-draft-tokens", "-k")] = 4,
    prompts: Annotated[int, typer.Option(help="Number of prompts (the first of the workload).")] = 6,
    max_new_tokens: int = 64,
    workload: Annotated[str, typer.Option(help="gsm8k (GSM8K test questions), chat (the teacher data's held-out "
                                          "everyday queries), spec-bench (first turns) or humaneval; each as one "
                                          "chat turn")] = "gsm8k",
    data_dir: Annotated[Optional[Path], typer.Option(help="Directory with the workload's data (default: "
                                                     "$GELATO_DATA_DIR, else ../shared/data).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Target-only vs our SD vs transformers' assisted generation (greedy, same K, same prompts)."""
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from gelato.experiments.bench_engine import as_dict, run_engine_bench
    from gelato.models import load_pair, shared_vocab_size
    from gelato.models.chat import stop_token_id

    if workload not in WORKLOADS:
        fail(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")
    if prompts < 1:
        fail(f"--prompts must be at least 1, got {prompts}")
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        draft_model, target_model, tok = load_pair(draft_dir, target_dir)
        prompt_ids = workload_prompt_ids(tok, workload, prompts, data_dir)
    except Exception as exc:  # noqa: BLE001 - surface the loader's message
        fail(str(exc))
    console = Console(stderr=True)
    bar = iter(track(range(len(prompt_ids)), description="bench engine", console=console, transient=True))
    result = run_engine_bench(draft_model, target_model, prompt_ids, num_draft_tokens, max_new_tokens,
                              stop_token_id(tok), tok.pad_token_id, shared_vocab_size(draft_model, target_model),
                              progress=lambda: next(bar, None))
    if as_json:
        typer.echo(json.dumps({"workload": workload, **as_dict(result)}, indent=2))
        return
    table = Table(title=f"engine benchmark (measured here): greedy, K={result.k}, {result.prompts} {workload} prompts x "
                        f"{result.max_new_tokens} new tokens")
    table.add_column("decoder")
    table.add_column("tokens/s", justify="right")
    table.add_column("vs target-only", justify="right")
    table.add_row("target only", f"{result.target_only_tps:.1f}", "1.00x")
    table.add_row("transformers assisted", f"{result.hf_assisted_tps:.1f}", f"{result.hf_vs_target:.2f}x")
    table.add_row("gelato SD", f"{result.ours_tps:.1f}", f"{result.ours_vs_target:.2f}x")
    console = Console()
    console.print(table)
    console.print(f"gelato / transformers assisted: {result.ours_vs_hf:.2f}x")
    console.print(f"mean acceptance length {result.mean_acceptance_length:.2f}, draft acceptance rate "
                  f"{result.draft_acceptance_rate:.3f}, fitted per-token acceptance a = {result.fitted_acceptance:.3f}, "
                  f"cost ratio c = {result.cost_ratio:.3f}")
    console.print(f"analytic speedup bound (1-a^(K+1))/((1-a)(1+Kc)) = {result.analytic_speedup:.2f}x; measured "
                  f"{result.ours_vs_target:.2f}x = {result.fraction_of_bound:.2f} of the bound")
    console.print(f"a target forward over K+1 = {result.k + 1} tokens costs {result.verify_cost_ratio:.2f}x a one-token "
                  f"forward (the bound assumes 1.00x); with that cost the bound is {result.refined_bound:.2f}x and "
                  f"the measured speedup is {result.ours_vs_target / result.refined_bound:.2f} of it")
    s = result.time_split
    total = sum(s.values()) or 1.0
    console.print("gelato SD time split: " + ", ".join(f"{k} {v / total:.0%}" for k, v in s.items()))
    console.print(f"outputs identical (gelato == target-only == transformers): {result.outputs_identical}")


@app.command("verify")
def verify(
    target: Annotated[Optional[Path], typer.Option(help="Target directory (default: the default pair's target, "
                                                        "SmolLM2-135M-Instruct).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16")] = "float32",
    sizes: Annotated[str, typer.Option(help="tokens per verify forward, comma-separated")] = "1,2,4,8,16",
    context: Annotated[int, typer.Option(help="cached tokens before the verified ones")] = 128,
    reps: Annotated[int, typer.Option(help="timed forwards per size and path (after 3 warm-ups)")] = 30,
    paths: Annotated[Optional[str], typer.Option(help="eager,static[,graph] (default: all the device allows)")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
    out: Annotated[Optional[Path], typer.Option(help="also write the JSON here")] = None,
) -> None:
    """One target verify forward at batch 1: eager vs static shapes (vs CUDA graphs on cuda), by tokens carried."""
    import torch

    from gelato.experiments.verify_bench import run_verify_bench
    from gelato.models.loading import load_causal_lm

    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        fail(f"--sizes must be comma-separated integers, got {sizes!r}")
    path_list = [p.strip() for p in paths.split(",") if p.strip()] if paths else None
    if threads:
        torch.set_num_threads(threads)
    if target is None:
        target = resolve_pair_dirs(None, None)[1]
    try:
        model = load_causal_lm(target, dtype, device)
        result = run_verify_bench(model, size_list, context=context, reps=reps, paths=path_list)
    except Exception as exc:  # noqa: BLE001 - the loader's and the argument checks' messages
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    data = {"target": str(target), "threads": torch.get_num_threads(), **result.to_dict()}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one verify forward, batch 1: {Path(target).name} on {result.device} ({result.dtype}), "
                        f"context {result.context}, median of {result.reps} (ms)")
    table.add_column("tokens", justify="right")
    for p in result.paths:
        table.add_column(f"{p} ms", justify="right")
    for p in result.paths[1:]:
        table.add_column(f"{p} / eager", justify="right")
    table.add_column("same argmax", justify="center")
    for n in size_list:
        med = {p: result.median(p, n) for p in result.paths}
        same = all(t.argmax_equal for t in result.timings if t.tokens == n)
        ratios = [f"{med[p] / med[result.paths[0]]:.2f}x" for p in result.paths[1:]]
        table.add_row(str(n), *[f"{med[p]:.2f}" for p in result.paths], *ratios, str(same))
    console = Console()
    console.print(table)
    worst = max(t.max_abs_diff for t in result.timings)
    console.print(f"max |logit difference| vs eager over every size: {worst:.2e}; threads {data['threads']}")
    typer.echo(json.dumps(data))

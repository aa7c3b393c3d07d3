"""Reproduce the GELATO paper's figures (arXiv 2605.10124): sweep definitions, the sweep runner, aggregation.

Every number comes from :func:`gelato.experiments.runner.run_policy` in the modelled clock, one 1000-round
run per (source, sweep point, policy variant, seed). Seeds drive the Rayleigh fading and, for the synthetic
source, the token draws; figures and tables use the MEDIAN across seeds (min and max are kept in the CSVs).

Sources (``PaperSource``):

- ``synthetic`` -- :class:`~gelato.experiments.synthetic.SyntheticSource`, the paper's regime
  (docs/design-decisions.md, "Paper-mode constants");
  charged with the paper's system (Qwen2.5-0.5B dims in the FLOPs model, Table I constants).
- ``trace`` -- a greedy trace of a real pair (``gelato trace record``), replayed exactly. Charged either
  as the ``paper`` system (the pair's acceptance and top-p supports, the paper's device and link), or as
  ``own-pair``: the same device and link but the FLOPs of the pair's own draft (``ModelDims.from_config``)
  and a payload indexed with the pair's own vocabulary (``b_index = ceil(log2 |V|)``).

Sweeps (Table I): bandwidth {1, 2, 4, 7, 10} MHz at T_V = 100 ms (``fig5ab``); T_V {60, ..., 140} ms at
5 MHz (``fig5cd``); the queue and budget trajectories for V in {10, 100} (``fig4``); acceptance against
entropy with the fitted ``exp(-c H)`` (``fig2``, in :mod:`gelato.experiments.acceptance`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gelato.constants import E_BAR_J, G_MAX, V, within_energy_budget
from gelato.decoding.payload_modes import PayloadMode
from gelato.experiments.config import RunConfig
from gelato.experiments.runner import PromptRun, run_policy, synthetic_prompt_runs, trace_prompt_runs
from gelato.experiments.sweep import Point, run_sweep
from gelato.experiments.trace import Trace
from gelato.policies.registry import make_policy
from gelato.system.config import ComputeSpec, SystemConfig
from gelato.system.presets import PAPER

# ---------------------------------------------------------------------------------------------------
# The paper's operating points and reported numbers

BANDWIDTHS_MHZ: tuple[float, ...] = tuple(float(b) for b in PAPER.bandwidths_mhz)
T_VERIFY_MS: tuple[float, ...] = tuple(round(t * 1000, 6) for t in PAPER.t_verify_sweep_s)
FIG5AB_T_VERIFY_MS = PAPER.t_verify_s * 1000
FIG5CD_BANDWIDTH_MHZ = float(PAPER.sweep_bandwidth_mhz)
TOP_PS: tuple[float, ...] = tuple(PAPER.top_p)
GELATO_TOP_P = PAPER.top_p[0]
V_VALUES: tuple[float, ...] = tuple(float(v) for v in PAPER.v_values)
# gelato-improved's target: >= +15% throughput over gelato-paper at equal energy (docs/design-decisions.md,
# "Beyond the paper")
IMPROVED_TARGET_PCT = 15.0

# The paper's reported gains of GELATO (throughput %, J/token %), where it states them per point.
PAPER_REPORTED: dict[tuple[str, float], tuple[float | None, float | None]] = {
    ("fig5ab", 1.0): (64.98, -47.47),
    ("fig5cd", 60.0): (25.95, None),
    ("fig5cd", 140.0): (20.04, None),
}
PAPER_REPORTED_NOTES = {
    "fig5ab": "at 1 MHz: up to +64.98% throughput and -47.47% J/token (the baseline is not named)",
    "fig5cd": "at 5 MHz: +25.95% (T_V = 60 ms) to +20.04% (T_V = 140 ms) throughput, up to -23.39% J/token",
}
PAPER_RANGES = {
    "fig5ab": {"tokens_per_second": (10.0, 28.0), "joules_per_token": (0.20, 0.27)},
    "fig5cd": {"tokens_per_second": (20.0, 32.0), "joules_per_token": (0.19, 0.23)},
}

# ---------------------------------------------------------------------------------------------------
# Policy variants

GELATO_POLICIES = ("gelato-paper", "gelato-improved", "gelato-outer-only", "gelato-inner-only")
_PAPER_FAMILY = ("gelato-paper", "gelato-outer-only", "gelato-inner-only")  # take V


@dataclass(frozen=True)
class Variant:
    """One line of a figure: a registered policy, its payload top-p and constructor arguments."""

    label: str
    policy: str
    top_p: float = GELATO_TOP_P
    args: tuple[tuple[str, Any], ...] = ()
    group: Literal["gelato", "paper-baseline", "baseline"] = "baseline"

    @property
    def policy_args(self) -> dict[str, Any]:
        return dict(self.args)


def gelato_variants(V: float = V) -> list[Variant]:
    """GELATO and its ablations at their own payload choice (top-p 0.99995)."""
    out = []
    for name in GELATO_POLICIES:
        args = (("V", float(V)),) if name in _PAPER_FAMILY else ()
        out.append(Variant(name, name, GELATO_TOP_P, args, "gelato"))
    return out


def paper_baselines() -> list[Variant]:
    """The paper's baselines: static SD g in {5, 7, 9} at top-p 0.99995 and 0.99998, and DSSD (g = 7)."""
    out = [Variant(f"static-{g}@{p:g}", f"static-{g}", p, (), "paper-baseline") for g in PAPER.static_g for p in TOP_PS]
    out.append(Variant("dssd", "dssd", GELATO_TOP_P, (), "paper-baseline"))
    return out


def extra_baselines() -> list[Variant]:
    """Every other registered policy (edge-only decoding, transformers' schedules, early exits, goodput)."""
    from gelato.policies.registry import POLICIES

    handled = {"static-5", "static-7", "static-9", "dssd", *GELATO_POLICIES}
    return [Variant(name, name, GELATO_TOP_P, (), "baseline") for name in POLICIES if name not in handled]


def default_variants(V: float = V, extra: bool = True) -> list[Variant]:
    return gelato_variants(V) + paper_baselines() + (extra_baselines() if extra else [])


def calibrated_paper_variant(rho0: float, c: float, V: float = V) -> Variant:
    """gelato-paper planning with a pair's measured acceptance and fitted entropy map instead of 0.9 / 0.35."""
    rho0 = min(0.99, max(0.01, float(rho0)))
    return Variant("gelato-paper-fitted", "gelato-paper", GELATO_TOP_P,
                   (("V", float(V)), ("rho0", round(rho0, 4)), ("c", round(max(1e-3, float(c)), 4))), "gelato")


# ---------------------------------------------------------------------------------------------------
# Sweeps


@dataclass(frozen=True)
class Sweep:
    name: str
    title: str
    axis: Literal["bandwidth_mhz", "t_verify_ms"]
    points: tuple[Point, ...]

    def x(self, point: Point) -> float:
        return getattr(point, self.axis)

    @property
    def axis_label(self) -> str:
        return "uplink bandwidth (MHz)" if self.axis == "bandwidth_mhz" else "verification time T_V (ms)"


SWEEPS: dict[str, Sweep] = {
    "fig5ab": Sweep("fig5ab", f"Bandwidth sweep at T_V = {FIG5AB_T_VERIFY_MS:g} ms", "bandwidth_mhz",
                    tuple(Point(b, FIG5AB_T_VERIFY_MS) for b in BANDWIDTHS_MHZ)),
    "fig5cd": Sweep("fig5cd", f"Verification-time sweep at {FIG5CD_BANDWIDTH_MHZ:g} MHz", "t_verify_ms",
                    tuple(Point(FIG5CD_BANDWIDTH_MHZ, t) for t in T_VERIFY_MS)),
}


def make_sweep(name: str, points: Sequence[Point]) -> Sweep:
    """A sweep with the preset's axis over other points (tests, quick looks)."""
    base = SWEEPS[name]
    return Sweep(base.name, base.title, base.axis, tuple(points))


# ---------------------------------------------------------------------------------------------------
# Sources


def _vocab_size(model_dir: Path) -> int:
    import json

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    cfg = cfg.get("text_config", cfg) if "vocab_size" not in cfg else cfg
    return int(cfg["vocab_size"])


@dataclass
class PaperSource:
    """Where rounds come from (synthetic or a trace) and how they are charged (paper or own-pair system)."""

    kind: Literal["synthetic", "trace"] = "synthetic"
    charging: Literal["paper", "own-pair"] = "paper"
    trace_path: Path | None = None
    draft_dir: Path | None = None
    trace: Trace | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "synthetic" and self.charging != "paper":
            raise ValueError("the synthetic source is the paper's regime: it is charged with the paper system only")
        if self.kind == "trace":
            if self.trace is None:
                if self.trace_path is None:
                    raise ValueError("source 'trace' needs a trace file (record one with `gelato trace record`)")
                self.trace = Trace.load(self.trace_path)
            missing = [p for p in TOP_PS if p not in self.trace.header.get("top_ps", [])]
            if missing:
                raise ValueError(f"the trace has no top-p supports at {missing}; record it with the default top-ps")
            if self.trace.k_max < G_MAX:
                raise ValueError(f"the trace's k_max is {self.trace.k_max}; the sweeps need {G_MAX} "
                                 f"(record with --k-max {G_MAX})")
        if self.charging == "own-pair":
            if self.draft_dir is None and self.trace is not None and self.trace.header.get("draft"):
                self.draft_dir = Path(self.trace.header["draft"])
            if self.draft_dir is None or not (Path(self.draft_dir) / "config.json").is_file():
                raise ValueError(f"own-pair charging needs the draft model directory (config.json), got "
                                 f"{self.draft_dir}")

    @property
    def key(self) -> str:
        """File-name key: ``synthetic``, ``trace-paper`` or ``trace-own-pair``."""
        return "synthetic" if self.kind == "synthetic" else f"trace-{self.charging}"

    def describe(self) -> str:
        if self.kind == "synthetic":
            return "synthetic source (paper regime: phi(H) = exp(-0.35 H), mean acceptance 0.9), paper system"
        t = self.trace
        pair = t.header.get("pair", "?")
        what = (f"trace of the `{pair}` pair ({len(t.prompts)} prompts, "
                f"{sum(p.length for p in t.prompts)} target tokens, draft {t.header.get('draft', '?')})")
        if self.charging == "paper":
            return what + ", charged with the paper system (Qwen2.5-0.5B FLOPs, Qwen vocabulary payload)"
        return what + f", charged with the pair's own draft FLOPs and vocabulary ({self.draft_dir})"

    def prompt_runs(self, top_p: float, seed: int) -> Iterator[PromptRun]:
        """The source's prompts, each verified by the paper's edge: at most g_max draft tokens a round (Table I),
        the round loop's ceiling for every policy (transformers' hf-confidence asks for 20)."""
        if self.kind == "synthetic":
            runs = synthetic_prompt_runs(seed, top_p, context=PAPER.prompt_context, answer_tokens=PAPER.reset_every)
        else:
            runs = trace_prompt_runs(self.trace, top_p)
        for run in runs:
            run.verifier.max_draft = G_MAX
            yield run

    def system_config(self, variant: Variant, point: Point) -> SystemConfig:
        cfg = RunConfig(source="synthetic", policy=variant.policy, policy_args=variant.policy_args, system="paper",
                        bandwidth_mhz=point.bandwidth_mhz, t_verify_ms=point.t_verify_ms,
                        payload_top_p=variant.top_p)
        system = cfg.system_config()
        if self.charging == "paper":
            return system
        vocab = _vocab_size(self.draft_dir)
        payload_update: dict[str, Any] = {"b_index": max(1, math.ceil(math.log2(vocab))), "vocab_size": vocab}
        if system.payload.mode == PayloadMode.DSSD:
            payload_update["dssd_target_support"] = vocab
        return system.model_copy(update={
            "name": "paper-own-pair",
            "draft": ComputeSpec(kind="flops", hf_config=Path(self.draft_dir), flops_per_s=PAPER.flops_per_s),
            "payload": system.payload.model_copy(update=payload_update)})


# ---------------------------------------------------------------------------------------------------
# Running

SUMMARY_METRICS = ("tokens_per_second", "joules_per_token", "mean_round_energy", "mean_acceptance_length",
                   "draft_acceptance_rate", "mean_budget", "uplink_bytes_per_token")


def run_variant(source: PaperSource, variant: Variant, point: Point, seed: int, rounds: int = PAPER.rounds,
                e_bar: float = E_BAR_J, keep_rows: bool = False) -> dict:
    """One run: a flat record of the run's summary metrics (plus ``rows`` when ``keep_rows``)."""
    clock = source.system_config(variant, point).build_clock(seed)
    policy = make_policy(variant.policy, predictor=clock, energy_budget=e_bar, **variant.policy_args)
    result = run_policy(policy, clock, source.prompt_runs(variant.top_p, seed), rounds, e_bar)
    s = result.summary
    record = {"source": source.key, "bandwidth_mhz": point.bandwidth_mhz, "t_verify_ms": point.t_verify_ms,
              "variant": variant.label, "policy": variant.policy, "group": variant.group, "top_p": variant.top_p,
              "seed": seed, "rounds": s["rounds"], "tokens": s["tokens"],
              **{m: float(s[m]) for m in SUMMARY_METRICS},
              "energy_ok": within_energy_budget(s["mean_round_energy"], e_bar)}
    if keep_rows:
        record["rows"] = result.rows
    return record


def sweep_runs(sweep: Sweep, source: PaperSource, variants: Sequence[Variant], seeds: Sequence[int],
               rounds: int = PAPER.rounds, e_bar: float = E_BAR_J,
               on_run: Callable[[str], None] | None = None) -> list[dict]:
    """Every (point, variant, seed) of ``sweep`` through the shared :func:`~gelato.experiments.sweep.run_sweep`;
    one record per run, tagged with the sweep's name."""
    def tagged(variant: Variant, point: Point, seed: int) -> dict:
        return {**run_variant(source, variant, point, seed, rounds, e_bar), "sweep": sweep.name}

    def progress(rec: dict) -> None:
        if on_run is not None:
            on_run(f"{sweep.name} {source.key} {Point(rec['bandwidth_mhz'], rec['t_verify_ms']).label()} "
                   f"{rec['variant']} seed {rec['seed']}")

    return run_sweep(tagged, sweep.points, variants, seeds, progress=progress)


def aggregate(records: Iterable[dict], metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict]:
    """Median, min and max across seeds for each (source, sweep, point, variant), in first-seen order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        key = (rec["source"], rec.get("sweep", ""), float(rec["bandwidth_mhz"]), float(rec["t_verify_ms"]),
               rec["variant"])
        groups[key].append(rec)
    out = []
    for (src, sweep, bw, tv, label), recs in groups.items():
        first = recs[0]
        row = {"source": src, "sweep": sweep, "bandwidth_mhz": bw, "t_verify_ms": tv, "variant": label,
               "policy": first["policy"], "group": first["group"], "top_p": first["top_p"], "seeds": len(recs),
               "rounds": first["rounds"]}
        for m in metrics:
            values = [float(r[m]) for r in recs]
            row[m] = statistics.median(values)
            row[f"{m}_min"] = min(values)
            row[f"{m}_max"] = max(values)
        row["energy_ok_seeds"] = sum(bool(r["energy_ok"]) for r in recs)
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------
# Fig. 4: budget and queue over the rounds


FIG4_COLUMNS = ("source", "variant", "V", "seed", "round", "budget", "queue_at_budget", "queue", "e_round",
                "t_round", "sent", "accepted")


def run_fig4(source: PaperSource, point: Point, seeds: Sequence[int], rounds: int = PAPER.rounds,
             e_bar: float = E_BAR_J, v_values: Sequence[float] = V_VALUES, with_improved: bool = True,
             on_run: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """gelato-paper at each V (and gelato-improved for reference): per-round trajectories of the FIRST seed
    and per-seed summary records of every seed."""
    variants = [Variant(f"gelato-paper V={v:g}", "gelato-paper", GELATO_TOP_P, (("V", float(v)),), "gelato")
                for v in v_values]
    if with_improved:
        variants.append(Variant("gelato-improved", "gelato-improved", GELATO_TOP_P, (), "gelato"))
    trajectories, records = [], []
    for variant in variants:
        for i, seed in enumerate(seeds):
            rec = run_variant(source, variant, point, seed, rounds, e_bar, keep_rows=i == 0)
            rec["sweep"] = "fig4"
            rows = rec.pop("rows", None)
            if rows is not None:
                v = variant.policy_args.get("V")
                for r in rows:
                    trajectories.append({
                        "source": source.key, "variant": variant.label, "V": "" if v is None else v, "seed": seed,
                        "round": r["index"], "budget": r.get("policy_budget", r["budget"]),
                        "queue_at_budget": r.get("policy_queue_at_budget", r.get("policy_queue")),
                        "queue": r.get("policy_queue"), "e_round": r.get("e_round"), "t_round": r.get("t_round"),
                        "sent": r["sent"], "accepted": r["accepted"]})
            records.append(rec)
            if on_run is not None:
                on_run(f"fig4 {source.key} {variant.label} seed {seed}")
    return trajectories, records

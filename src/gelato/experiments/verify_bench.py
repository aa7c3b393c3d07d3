"""``gelato bench verify``: the time of ONE target verify forward at batch 1, by tokens carried and by path.

Paths (all through the same ``feed`` call the edge makes, logits copied back to the host included):

- ``eager``: :class:`~gelato.models.cached.CachedCausalLM` (dynamic shapes, transformers' DynamicCache);
- ``static``: :class:`~gelato.models.static_verify.StaticVerifyEngine` with fixed shapes, run eagerly;
- ``graph``: the same static forward captured as CUDA graphs and replayed (cuda only).

Each measurement keeps a context of ``context`` cached tokens, rolls back to it, and feeds ``n`` new tokens
(the newest committed token plus ``n - 1`` draft tokens): exactly one verify round. Warm-up runs come first
(on ``graph`` they capture the bucket's graph; the capture time is reported apart). Each path's logits are
checked against ``eager``'s on the same input (max |difference| and argmax agreement).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from gelato.models.cached import CachedCausalLM
from gelato.models.static_verify import StaticVerifyEngine

SIZES = (1, 2, 4, 8, 16)
PATHS = ("eager", "static", "graph")


@dataclass
class VerifyTiming:
    path: str
    tokens: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    first_ms: float  # the first run (on graph: includes capturing the bucket)
    max_abs_diff: float  # vs eager on the same input
    argmax_equal: bool


@dataclass
class VerifyBench:
    device: str
    dtype: str
    context: int
    reps: int
    paths: list[str]
    timings: list[VerifyTiming] = field(default_factory=list)

    def median(self, path: str, tokens: int) -> float | None:
        return next((t.median_ms for t in self.timings if t.path == path and t.tokens == tokens), None)

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _lm(path: str, model: torch.nn.Module, max_len: int):
    if path == "eager":
        return CachedCausalLM(model)
    return StaticVerifyEngine(model, max_len=max_len, graphs=path == "graph").sequence()


def run_verify_bench(model: torch.nn.Module, sizes: Sequence[int] = SIZES, context: int = 128, reps: int = 30,
                     warmup: int = 3, paths: Sequence[str] | None = None, seed: int = 0) -> VerifyBench:
    """Time one verify forward of each size in ``sizes`` on each path (see the module docstring)."""
    device = next(model.parameters()).device
    if paths is None:
        paths = ["eager", "static"] + (["graph"] if device.type == "cuda" else [])
    paths = sorted(set(paths), key=lambda p: ("eager", "static", "graph").index(p) if p in PATHS else 9)
    if "graph" in paths and device.type != "cuda":
        raise ValueError("the graph path needs --device cuda")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown or not sizes or min(sizes) < 1 or context < 1 or reps < 1:
        raise ValueError(f"bad benchmark arguments: paths {list(paths)}, sizes {list(sizes)}, context {context}, "
                         f"reps {reps}")
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, vocab, (context,), generator=gen).tolist()
    extra = torch.randint(0, vocab, (max(sizes),), generator=gen).tolist()
    max_len = context + max(sizes) + 64
    bench = VerifyBench(str(device), str(next(model.parameters()).dtype).removeprefix("torch."), context, reps,
                        list(paths))
    reference: dict[int, torch.Tensor] = {}
    for path in paths:
        lm = _lm(path, model, max_len)
        lm.feed(prefix)
        for n in sizes:
            ids = prefix + extra[: n]
            times = []
            for i in range(warmup + reps):
                lm.truncate(context)
                _sync(device)
                t0 = time.perf_counter()
                logits = lm.feed(ids, logits_from=context)  # n new tokens, n rows: one verify round
                _sync(device)
                times.append((time.perf_counter() - t0) * 1e3)
            if path == "eager":
                reference[n] = logits
            ref = reference.get(n, logits)
            diff = float((logits - ref).abs().max())
            q = statistics.quantiles(times[warmup:], n=10) if reps > 1 else [times[-1]] * 9
            bench.timings.append(VerifyTiming(path, n, statistics.median(times[warmup:]), q[0], q[-1], times[0],
                                              diff, bool(torch.equal(logits.argmax(-1), ref.argmax(-1)))))
        del lm
    return bench

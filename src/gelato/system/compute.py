"""Compute cost of forward passes: the paper's FLOPs model, a constant, or a measured profile.

Every model answers one question, ``forward_seconds(n_tokens, context_len)``: the time of one forward
pass that feeds ``n_tokens`` new tokens on top of ``context_len`` cached ones.

* :class:`FlopsCompute` (the paper; docs/design-decisions.md, "The round and the system model"): one layer costs, per new token at position
  ``c`` (``c`` tokens before it), ``8 d^2 + 4 (c + 1/2) d + 4 d d_ff`` FLOPs, so a forward of ``n``
  tokens after ``L`` cached ones costs ``n_layers * n * (8 d^2 + 4 (L + n/2) d + 4 d d_ff)``; time is
  FLOPs / device FLOP/s. Summing ``g`` single-token forwards at contexts ``L, L+1, ..., L+g-1`` gives
  exactly the paper's draft cost ``F = n_layers * g * (8 d^2 + 4 (L + g/2) d + 4 d d_ff)``.
* :class:`ConstantCompute`: a fixed time per forward (the paper's verification time ``T_V``).
* :class:`MeasuredProfile`: ``scale * (a + b n + c n L)``, least-squares fitted (non-negative) to
  forward times of a real torch model on this machine (:func:`calibrate_profile`), stored as JSON.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ComputeModel(Protocol):
    def forward_seconds(self, n_tokens: int, context_len: int) -> float: ...


@dataclass(frozen=True)
class ModelDims:
    """Transformer dimensions used by the FLOPs model."""

    n_layers: int
    d_model: int
    d_ff: int

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelDims.{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, cfg: Any) -> "ModelDims":
        """From a Hugging Face config object, a dict, a ``config.json`` path or a model directory."""
        if isinstance(cfg, (str, Path)):
            path = Path(cfg)
            if path.is_dir():
                path = path / "config.json"
            if not path.is_file():
                raise FileNotFoundError(f"no Hugging Face config.json at {path}")
            cfg = json.loads(path.read_text())
        get = cfg.get if isinstance(cfg, Mapping) else (lambda k, d=None: getattr(cfg, k, d))
        if get("text_config") is not None and get("num_hidden_layers") is None:
            return cls.from_config(get("text_config"))
        values = {}
        for name, keys in (("n_layers", ("num_hidden_layers", "n_layer", "num_layers")),
                           ("d_model", ("hidden_size", "n_embd", "d_model")),
                           ("d_ff", ("intermediate_size", "n_inner", "ffn_dim"))):
            found = next((get(k) for k in keys if get(k) is not None), None)
            if found is None:
                raise ValueError(f"config has none of {keys} (needed for ModelDims.{name})")
            values[name] = int(found)
        return cls(**values)


QWEN25_0_5B = ModelDims(n_layers=24, d_model=896, d_ff=4864)  # Qwen/Qwen2.5-0.5B-Instruct config.json
QWEN25_7B = ModelDims(n_layers=28, d_model=3584, d_ff=18944)  # Qwen/Qwen2.5-7B-Instruct config.json
QWEN25_0_5B_PARAMS = 0.49e9  # Qwen2.5 model card: 0.49B parameters (0.36B non-embedding)
QWEN25_7B_PARAMS = 7.61e9  # Qwen2.5 model card: 7.61B parameters (6.53B non-embedding)


def forward_flops(dims: ModelDims, n_tokens: int, context_len: int) -> float:
    """FLOPs of one forward of ``n_tokens`` after ``context_len`` cached tokens (paper formula)."""
    if n_tokens < 0 or context_len < 0:
        raise ValueError(f"n_tokens and context_len must be >= 0, got {n_tokens}, {context_len}")
    d, dff = dims.d_model, dims.d_ff
    return float(dims.n_layers * n_tokens * (8 * d * d + 4 * (context_len + n_tokens / 2) * d + 4 * d * dff))


@dataclass(frozen=True)
class FlopsCompute:
    """Time = FLOPs / ``flops_per_s``."""

    dims: ModelDims
    flops_per_s: float

    def __post_init__(self) -> None:
        if not self.flops_per_s > 0:
            raise ValueError(f"flops_per_s must be > 0, got {self.flops_per_s}")

    def flops(self, n_tokens: int, context_len: int) -> float:
        return forward_flops(self.dims, n_tokens, context_len)

    def forward_seconds(self, n_tokens: int, context_len: int) -> float:
        return self.flops(n_tokens, context_len) / self.flops_per_s


@dataclass(frozen=True)
class RooflineCompute:
    """``max(FLOPs / peak FLOP/s, weight bytes / memory bandwidth)`` per forward.

    A forward reads every weight once whatever the number of tokens it feeds, so small forwards (decode,
    verification of a few tokens) are bandwidth bound and cost about the same; long ones become compute
    bound. Used for the edge target in the generic clock (a GPU at batch 1).
    """

    dims: ModelDims
    peak_flops_per_s: float
    memory_bw_bytes_per_s: float
    weight_bytes: float

    def __post_init__(self) -> None:
        if not (self.peak_flops_per_s > 0 and self.memory_bw_bytes_per_s > 0 and self.weight_bytes > 0):
            raise ValueError("roofline peak FLOP/s, memory bandwidth and weight bytes must all be > 0")

    def forward_seconds(self, n_tokens: int, context_len: int) -> float:
        if n_tokens <= 0:
            return 0.0
        return max(forward_flops(self.dims, n_tokens, context_len) / self.peak_flops_per_s,
                   self.weight_bytes / self.memory_bw_bytes_per_s)


@dataclass(frozen=True)
class ConstantCompute:
    """Every forward takes ``seconds`` (the paper's verification time T_V)."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            raise ValueError(f"a constant forward time must be >= 0 s, got {self.seconds}")

    def forward_seconds(self, n_tokens: int, context_len: int) -> float:
        return self.seconds


@dataclass(frozen=True)
class BatchedEdgeCompute:
    """The edge's forward when ``devices`` sessions share it, each feeding the same ``n`` tokens: a line in the
    tokens carried, ``per_token_s * (saturation_tokens + devices * n) / (saturation_tokens + 1)``.

    ``per_token_s`` is one session's one-token forward (the edge's time per token when it decodes alone);
    ``saturation_tokens`` is where the forward's time has doubled (``a / b`` of a measured profile: about 5 for
    the default target on one CPU core, hundreds on a GPU, whose small forwards are bandwidth bound).
    """

    per_token_s: float
    devices: int = 1
    saturation_tokens: float = 5.0

    def __post_init__(self) -> None:
        if not (self.per_token_s > 0 and self.devices >= 1 and self.saturation_tokens > 0):
            raise ValueError(f"per-token time, devices and saturation must be > 0, got {self.per_token_s}, "
                             f"{self.devices}, {self.saturation_tokens}")

    def forward_seconds(self, n_tokens: int, context_len: int) -> float:
        if n_tokens <= 0:
            return 0.0
        return self.per_token_s * (self.saturation_tokens + self.devices * n_tokens) / (self.saturation_tokens + 1)


@dataclass(frozen=True)
class MeasuredProfile:
    """``forward_seconds = scale * (a + b * n + c * n * context_len)``, fitted to measured times."""

    a: float
    b: float
    c: float
    scale: float = 1.0
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if min(self.a, self.b, self.c) < 0 or not self.scale > 0:
            raise ValueError(f"profile coefficients must be >= 0 and scale > 0, got {self.a}, {self.b}, {self.c}, "
                             f"scale {self.scale}")

    def forward_seconds(self, n_tokens: int, context_len: int) -> float:
        if n_tokens <= 0:
            return 0.0
        return self.scale * (self.a + self.b * n_tokens + self.c * n_tokens * context_len)

    def scaled(self, factor: float) -> "MeasuredProfile":
        """The same profile on a device ``1/factor`` as fast (factor = this host's speed / the device's)."""
        return MeasuredProfile(self.a, self.b, self.c, self.scale * factor, dict(self.meta))

    @classmethod
    def fit(cls, samples: Iterable[tuple[int, int, float]], meta: dict | None = None) -> "MeasuredProfile":
        """Non-negative least squares on ``(n_tokens, context_len, seconds)`` samples."""
        rows = [(float(n), float(ctx), float(t)) for n, ctx, t in samples]
        if len(rows) < 3:
            raise ValueError(f"need at least 3 timing samples to fit a profile, got {len(rows)}")
        x = np.array([[1.0, n, n * ctx] for n, ctx, _ in rows])
        y = np.array([t for _, _, t in rows])
        coef = _nnls_small(x, y)
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), 1.0, dict(meta or {}))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping) -> "MeasuredProfile":
        unknown = set(data) - {"a", "b", "c", "scale", "meta"}
        if unknown:
            raise ValueError(f"unknown fields in a measured profile: {sorted(unknown)}")
        return cls(float(data["a"]), float(data["b"]), float(data["c"]), float(data.get("scale", 1.0)),
                   dict(data.get("meta", {})))

    @classmethod
    def from_json(cls, text: str) -> "MeasuredProfile":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MeasuredProfile":
        return cls.from_json(Path(path).read_text())


def _nnls_small(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for a handful of columns: best feasible subset solution."""
    k = x.shape[1]
    best, best_err = np.zeros(k), float(np.sum(y * y))
    for size in range(1, k + 1):
        for cols in itertools.combinations(range(k), size):
            sol, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if np.any(sol < 0):
                continue
            coef = np.zeros(k)
            coef[list(cols)] = sol
            err = float(np.sum((x @ coef - y) ** 2))
            if err < best_err - 1e-18:
                best, best_err = coef, err
    return best


def draft_seconds(model: ComputeModel, n_computed: int, context_len: int, n_pending: int = 0) -> float:
    """Time to draft ``n_computed`` tokens autoregressively when ``context_len`` tokens are committed.

    ``n_pending = 0`` is the paper's accounting: ``g`` single-token forwards at contexts ``L .. L+g-1``
    (with :class:`FlopsCompute` this equals ``F / f_D`` with the paper's formula). ``n_pending >= 1``
    models the real proposer: the first forward feeds the committed tokens the draft cache has not seen
    (1, or 2 after a round whose every drafted token was accepted) ending at position ``L-1``, then each
    further forward feeds the previous draft token.
    """
    if n_computed <= 0:
        return 0.0
    if n_pending <= 0:
        return sum(model.forward_seconds(1, context_len + i) for i in range(n_computed))
    first = model.forward_seconds(n_pending, max(0, context_len - n_pending))
    return first + sum(model.forward_seconds(1, context_len + i - 1) for i in range(1, n_computed))


def next_pending(pending: int, n_computed: int, accepted: int) -> int:
    """Committed tokens the draft's KV cache lacks at the next round (``n_pending`` of :func:`draft_seconds`).

    ``pending``: what it lacked at this round's start (1 at a new prompt). A round that computed no draft
    token fed nothing, so its lack grows by the verdict token: ``pending + 1``. Otherwise the draft fed all
    it had but its last token, so it lacks the verdict token only (1), plus that last draft token when every
    computed token was accepted (2): it was produced but never fed back.
    """
    if n_computed == 0:
        return pending + 1
    return 2 if accepted >= n_computed else 1


def verify_seconds(model: ComputeModel, n_sent: int, context_len: int) -> float:
    """One target forward over the newest committed token plus the ``n_sent`` draft tokens."""
    return model.forward_seconds(n_sent + 1, max(0, context_len - 1))


def calibrate_profile(model: Any, n_values: Sequence[int] = (1, 2, 4, 8), ctx_values: Sequence[int] = (16, 64, 128),
                      repeats: int = 5, warmup: int = 2, seed: int = 0, vocab_size: int | None = None,
                      meta: dict | None = None) -> MeasuredProfile:
    """Time real forwards of a torch causal LM (or a ``CachedCausalLM``) and fit a profile.

    For each context length ``L`` the KV cache is filled with ``L`` random tokens once; each timing feeds
    ``n`` more tokens and crops the cache back to ``L``. The median of ``repeats`` runs is used.
    """
    import torch

    from gelato.models.cached import CachedCausalLM

    lm = model if isinstance(model, CachedCausalLM) else CachedCausalLM(model)
    vocab = int(vocab_size or lm.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    samples: list[tuple[int, int, float]] = []
    for ctx in ctx_values:
        if ctx < 1:
            raise ValueError(f"context lengths must be >= 1 for calibration, got {ctx}")
        lm.reset()
        prefix = torch.randint(0, vocab, (ctx,), generator=gen).tolist()
        lm.feed(prefix)
        for n in n_values:
            new = torch.randint(0, vocab, (n,), generator=gen).tolist()
            times = []
            for r in range(warmup + repeats):
                t0 = time.perf_counter()
                lm.feed(prefix + new)
                dt = time.perf_counter() - t0
                lm.truncate(ctx)
                if r >= warmup:
                    times.append(dt)
            samples.append((n, ctx, statistics.median(times)))
    info = {"samples": samples, "torch_threads": torch.get_num_threads(), **(meta or {})}
    return MeasuredProfile.fit(samples, meta=info)

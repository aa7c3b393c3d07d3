"""Time-boxed training of the Llama-style target and the distilled draft.

Training stops at a wall-clock deadline. The learning rate follows the *fraction of the budget spent*
(linear warm-up, cosine decay to 10%), so a run with the same seed and budget draws the same batches
and follows the same loss curve up to the speed of the machine.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

# Besides the time-based log points, every this many steps: a step grid that runs with the same seed share.
CURVE_EVERY_STEPS = 10
# The learning rate decays over the last 20% of the time budget (see lr_at).
DECAY_START = 0.8

from gelato.zoo.specs import ModelShape

# ----------------------------------------------------------------------------------------- data

@dataclass
class TokenStream:
    """All documents' tokens back to back (EOS after each document) and the allowed window starts."""

    ids: np.ndarray  # int64, with the first ``context + 1`` tokens appended again so windows can wrap
    starts: np.ndarray  # chunk start offsets
    n_tokens: int

    @classmethod
    def from_docs(cls, docs: Sequence[Sequence[str]], tokenizer, context: int) -> TokenStream:
        chunks = [c for d in docs for c in d]
        encoded = tokenizer(chunks, add_special_tokens=False)["input_ids"] if chunks else []
        eos = tokenizer.eos_token_id
        parts, starts, pos, k = [], [], 0, 0
        for d in docs:
            for _ in d:
                ids = encoded[k]
                k += 1
                if not ids:
                    continue
                starts.append(pos)
                parts.append(np.asarray(ids, dtype=np.int64))
                pos += len(ids)
            parts.append(np.asarray([eos], dtype=np.int64))
            pos += 1
        if pos == 0:
            raise ValueError("the corpus is empty")
        flat = np.concatenate(parts)
        n = len(flat)
        reps = int(math.ceil((context + 1) / n)) + 1
        flat = np.concatenate([flat] * reps)[: n + context + 1]
        return cls(flat, np.asarray(starts, dtype=np.int64), n)

    def batch(self, rng: np.random.Generator, batch_size: int, context: int) -> torch.Tensor:
        s = self.starts[rng.integers(0, len(self.starts), size=batch_size)]
        idx = s[:, None] + np.arange(context + 1)[None, :]
        return torch.from_numpy(self.ids[idx])

    def windows(self, n: int, context: int, seed: int = 0) -> torch.Tensor:
        """``n`` fixed evaluation windows (deterministic)."""
        return self.batch(np.random.default_rng(seed), n, context)


# ---------------------------------------------------------------------------------------- model

def make_config(shape: ModelShape, vocab_size: int, context: int, tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads or shape.num_attention_heads,
        max_position_embeddings=max(2048, 4 * context),
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_dropout=0.0,
        initializer_range=0.02,
        use_cache=True,
    )


def make_model(shape: ModelShape, vocab_size: int, context: int, tokenizer, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(make_config(shape, vocab_size, context, tokenizer))
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def n_params(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_model(model: LlamaForCausalLM, directory: str | Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """Save as a standard HF directory with ``dtype`` weights (the in-memory model is left in float32)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.to(dtype)
    try:
        model.save_pretrained(str(directory), safe_serialization=True)
    finally:
        model.to(torch.float32)
    for f in directory.iterdir():  # safetensors writes 0600; package data must be world-readable
        if f.is_file():
            f.chmod(0o644)


def round_weights_(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Round the float32 weights through ``dtype`` in place (what saving at that precision keeps)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


# ------------------------------------------------------------------------------------- training

@dataclass
class TrainResult:
    role: str
    params: int
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    budget_seconds: float = 0.0
    final_train_loss: float = float("nan")
    tokens_per_second: float = 0.0
    curve: list[dict] = field(default_factory=list)  # {"step", "seconds", "tokens", "loss", "lr"}

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def lr_at(step: int, frac: float, peak: float, warmup_steps: int, decay_start: float = DECAY_START) -> float:
    """Linear warmup over ``warmup_steps`` steps, the peak rate, then a cosine decay to 0.1 x peak over the
    last ``1 - decay_start`` of the time budget (``frac`` = elapsed / budget).

    Everything before the decay depends on the step alone, so a rebuild with the same seed repeats that
    part of the loss curve exactly; only where the time budget ends (and so the decay) moves with the
    machine's speed.
    """
    if step < warmup_steps:
        return peak * max((step + 1) / warmup_steps, 0.02)
    if frac < decay_start:
        return peak
    t = min(1.0, (frac - decay_start) / max(1e-9, 1.0 - decay_start))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      alpha: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE``; returns (loss, CE) for logging."""
    s = student_logits.float().flatten(0, 1)
    t = teacher_logits.float().flatten(0, 1)
    ce = F.cross_entropy(s, targets.flatten())
    if alpha <= 0:
        return ce, ce
    log_q = F.log_softmax(s / temperature, dim=-1)
    log_p = F.log_softmax(t / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean") * temperature**2
    return alpha * kl + (1 - alpha) * ce, ce


def train_lm(model: LlamaForCausalLM, stream: TokenStream, *, role: str, budget_seconds: float, seed: int,
             batch_size: int, context: int, lr: float, weight_decay: float = 0.1, warmup_steps: int = 20,
             teacher: torch.nn.Module | None = None, kd_alpha: float = 0.8, kd_temperature: float = 1.0,
             autocast: bool = True, progress: bool = True, log: Callable[[str], None] | None = None,
             min_steps: int = 1) -> TrainResult:
    """Train ``model`` until ``budget_seconds`` have passed (at least ``min_steps`` steps).

    With a ``teacher`` the loss is distillation (KL to the teacher's distribution + next-token CE).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.train()
    if teacher is not None:
        teacher.eval()
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95), eps=1e-8)
    result = TrainResult(role=role, params=n_params(model), budget_seconds=budget_seconds)
    tty = sys.stderr.isatty()
    bar = tqdm(total=max(1, int(round(budget_seconds))), desc=f"train {role}", unit="s", disable=not progress,
               mininterval=0.5 if tty else 30.0, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}s "
               "[{elapsed}<{remaining}{postfix}]")
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    t0 = time.perf_counter()
    shown = 0
    ema = None
    log_every = max(5.0, budget_seconds / 60)
    next_log = log_every
    step = 0
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget_seconds and step >= min_steps:
            break
        cur_lr = lr_at(step, min(1.0, elapsed / max(budget_seconds, 1e-9)), lr, warmup_steps)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        w = stream.batch(rng, batch_size, context)
        x, y = w[:, :-1], w[:, 1:]
        with amp:
            logits = model(input_ids=x).logits
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(input_ids=x).logits
                loss, ce = distillation_loss(logits, t_logits, y, kd_alpha, kd_temperature)
            else:
                ce = loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        result.tokens += x.numel()
        ce_v = float(ce.detach())
        ema = ce_v if ema is None else 0.95 * ema + 0.05 * ce_v
        elapsed = time.perf_counter() - t0
        now = min(int(elapsed), bar.total)
        if now > shown:
            bar.update(now - shown)
            shown = now
            bar.set_postfix(ce=f"{ema:.3f}", tok_s=f"{result.tokens / elapsed:.0f}", step=step, refresh=False)
        if elapsed >= next_log or step == 1 or step % CURVE_EVERY_STEPS == 0:
            result.curve.append({"step": step, "seconds": round(elapsed, 2), "tokens": result.tokens,
                                 "loss": round(ema, 4), "lr": cur_lr})
            if elapsed >= next_log:
                if log is not None and not tty:
                    log(f"[{role}] step {step} {elapsed:.0f}s/{budget_seconds:.0f}s ce(ema)={ema:.3f} "
                        f"tok/s={result.tokens / max(elapsed, 1e-9):.0f} lr={cur_lr:.2e}")
                next_log = elapsed + log_every
    bar.update(bar.total - shown)
    bar.close()
    result.steps = step
    result.seconds = time.perf_counter() - t0
    result.final_train_loss = float(ema) if ema is not None else float("nan")
    result.tokens_per_second = result.tokens / max(result.seconds, 1e-9)
    result.curve.append({"step": step, "seconds": round(result.seconds, 2), "tokens": result.tokens,
                         "loss": round(result.final_train_loss, 4), "lr": cur_lr})
    model.eval()
    return result

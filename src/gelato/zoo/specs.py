"""Built-in pair specifications: tokenizer size, model shapes, optimiser settings, evaluation size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_key_value_heads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairSpec:
    name: str
    description: str
    vocab_size: int
    context: int  # training sequence length (tokens)
    target: ModelShape
    draft: ModelShape
    split_digits: bool = False  # pre-tokenize every digit on its own (arithmetic text)
    batch_size: int = 16
    draft_batch_size: int | None = None  # default: batch_size
    target_lr: float = 2e-3
    draft_lr: float = 3e-3
    weight_decay: float = 0.1
    target_fraction: float = 0.7  # share of --minutes spent on the target; the rest distils the draft
    kd_alpha: float = 0.8  # draft loss = alpha * KL(p_target || q_draft) + (1 - alpha) * CE
    kd_temperature: float = 1.0
    warmup_steps: int = 20  # linear warmup, in optimizer steps (deterministic for a seed)
    default_minutes: float = 10.0
    eval_prompts: int = 24
    eval_max_new_tokens: int = 64
    eval_ks: tuple[int, ...] = (2, 4, 8)
    eval_temperatures: tuple[float, ...] = (0.0, 1.0)
    val_windows: int = 48
    extra: dict = field(default_factory=dict)

    def with_overrides(self, **kw) -> PairSpec:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eval_ks"] = list(self.eval_ks)
        d["eval_temperatures"] = list(self.eval_temperatures)
        return d


PAIRS: dict[str, PairSpec] = {
    "gsm8k": PairSpec(
        name="gsm8k",
        description="GSM8K grade-school maths: trained on gsm8k_train.jsonl (question + worked answer), "
                    "evaluated on gsm8k_test.jsonl",
        vocab_size=2048,
        context=256,
        target=ModelShape(hidden_size=256, num_hidden_layers=8, num_attention_heads=4, intermediate_size=768),
        draft=ModelShape(hidden_size=128, num_hidden_layers=3, num_attention_heads=2, intermediate_size=320),
        split_digits=True,
        batch_size=8,
        target_lr=2e-3,
        draft_batch_size=16,
        default_minutes=25.0,
    ),
    "code": PairSpec(
        name="code",
        description="Python source of the running interpreter's standard library (sysconfig stdlib path)",
        vocab_size=4096,
        context=256,
        target=ModelShape(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1024),
        draft=ModelShape(hidden_size=128, num_hidden_layers=3, num_attention_heads=2, intermediate_size=384),
        default_minutes=11.0,
    ),
    "tiny": PairSpec(
        name="tiny",
        description="micro pair on a built-in synthetic arithmetic corpus, for tests and smoke builds",
        vocab_size=384,
        context=64,
        target=ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
        draft=ModelShape(hidden_size=32, num_hidden_layers=1, num_attention_heads=1, intermediate_size=64),
        split_digits=True,
        batch_size=16,
        target_lr=5e-3,
        draft_lr=5e-3,
        default_minutes=0.3,
        eval_prompts=4,
        eval_max_new_tokens=16,
        val_windows=8,
    ),
}


def get_spec(name: str) -> PairSpec:
    try:
        return PAIRS[name]
    except KeyError:
        raise ValueError(f"unknown pair {name!r}; built-in pairs: {sorted(PAIRS)}") from None

"""``gelato generate``: speculative decoding (or the target alone) on a local draft/target pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gelato.cli.common import fail, resolve_pair_dirs, sampling_params


def generate(
    prompt: Annotated[str, typer.Option(help="Prompt text (formatted as the pair expects).")],
    draft: Annotated[Optional[Path], typer.Option(help="Draft model directory (HF format).")] = None,
    target: Annotated[Optional[Path], typer.Option(help="Target model directory (HF format).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=0)] = 64,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_k: Annotated[int, typer.Option(help="0 = off.")] = 0,
    top_p: Annotated[float, typer.Option(help="1 = off.")] = 1.0,
    num_draft_tokens: Annotated[int, typer.Option("--num-draft-tokens", "-k", help="Draft length K.")] = 4,
    seed: int = 0,
    target_only: Annotated[bool, typer.Option(help="Decode with the target alone (the reference).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    dtype: str = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto.")] = "cpu",
) -> None:
    """Generate text with speculative decoding; the output equals the target's own."""
    from gelato.models import ModelLoadError, VocabularyMismatchError, load_pair, shared_vocab_size
    from gelato.policies import StaticPolicy
    from gelato.decoding.pipeline import generate_speculative, generate_target_only

    params = sampling_params(temperature, top_k, top_p)
    if num_draft_tokens < 1:
        fail(f"--num-draft-tokens must be >= 1, got {num_draft_tokens}")
    draft_dir, target_dir = resolve_pair_dirs(draft, target)
    try:
        draft_model, target_model, tokenizer = load_pair(draft_dir, target_dir, dtype, device)
    except (ModelLoadError, VocabularyMismatchError, ValueError) as exc:
        fail(str(exc))
    prompt_ids = tokenizer(prompt)["input_ids"] if prompt else []
    if not prompt_ids:
        fail("the prompt is empty: give --prompt with some text")
    vocab = shared_vocab_size(draft_model, target_model)
    if target_only:
        result = generate_target_only(target_model, prompt_ids, params, max_new_tokens, tokenizer.eos_token_id,
                                      seed, vocab)
    else:
        result = generate_speculative(draft_model, target_model, prompt_ids, params,
                                      StaticPolicy(num_draft_tokens), max_new_tokens, tokenizer.eos_token_id,
                                      seed, vocab_size=vocab)
    text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
    if as_json:
        typer.echo(json.dumps({"text": text, "token_ids": result.token_ids, "stop_reason": result.stop_reason,
                               "metrics": result.metrics.to_dict()}))
        return
    typer.echo(prompt + text)
    m = result.metrics
    typer.secho(f"\n[{m.generated_tokens} tokens, {m.rounds} rounds, mean acceptance length "
                f"{m.mean_acceptance_length:.2f}, {m.tokens_per_second:.1f} tok/s]", fg=typer.colors.BLUE, err=True)

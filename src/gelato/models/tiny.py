"""Random-weight tiny Llama models, for tests and for smoke-running the engine without trained weights."""

from __future__ import annotations

import copy

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(vocab_size: int = 64, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
               max_positions: int = 512) -> LlamaForCausalLM:
    """A seeded random LlamaForCausalLM (float32, eval mode)."""
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=max_positions, bos_token_id=None, eos_token_id=None,
                         pad_token_id=None)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
        # Random init gives near-uniform outputs; scaling the head makes distributions peaked like real LMs.
        with torch.no_grad():
            model.lm_head.weight.mul_(40.0)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def noisy_copy(model: LlamaForCausalLM, noise: float, seed: int = 0) -> LlamaForCausalLM:
    """A copy of ``model`` with Gaussian noise of relative size ``noise`` added to every weight."""
    clone = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in clone.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * noise * param.std().clamp_min(1e-6))
    return clone.eval()

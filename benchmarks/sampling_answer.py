"""One 128-token answer at temperature 1 on the default pair, in process: uplink bytes per drafted token,
acceptance and tok/s, for a policy and a draft-side top-k (0: draft from the whole q, as before sparse
proposals). Bytes are the real compact uplink messages' (no framing), billed by the modelled clock; tok/s
is measured wall time on this machine; the modelled tok/s is the paper system's clock.

    python benchmarks/sampling_answer.py --policy static-4 --draft-top-k 0
"""

from __future__ import annotations

import argparse
import json

import torch

from gelato.decoding.sampling import DRAFT_TOP_K, SamplingParams
from gelato.decoding.seeds import device_and_edge_generators
from gelato.generation import DraftModelProposer, TargetModelVerifier, generate
from gelato.models import load_pair, shared_vocab_size
from gelato.models.cached import CachedCausalLM
from gelato.models.chat import encode_prompt
from gelato.models.pairs import resolve_pair_dirs
from gelato.policies.registry import make_policy
from gelato.system.config import SystemConfig

PROMPT = "Write a short story about a lighthouse keeper."


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="static-4")
    ap.add_argument("--draft-top-k", type=int, default=DRAFT_TOP_K)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    draft, target, tok = load_pair(*resolve_pair_dirs(None, None))
    vocab = shared_vocab_size(draft, target)
    params = SamplingParams(temperature=1.0)
    clock = SystemConfig.paper(payload_mode="compact", greedy=False).build_clock(args.seed)
    device_gen, edge_gen = device_and_edge_generators(args.seed)
    proposer = DraftModelProposer(CachedCausalLM(draft, vocab), params, device_gen, args.draft_top_k)
    verifier = TargetModelVerifier(CachedCausalLM(target, vocab), params, edge_gen)
    policy = make_policy(args.policy, predictor=clock)
    ids = encode_prompt(tok, PROMPT)
    # no stop token: always 128 tokens, so the runs compare like for like
    result = generate(ids, proposer, verifier, policy, args.max_new_tokens, None, clock)
    m = result.metrics
    out = {"policy": args.policy, "draft_top_k": args.draft_top_k, "tokens": m.generated_tokens,
           "drafted_sent": m.sent, "uplink_bytes_per_drafted_token": clock.cum_bits_up / 8 / max(1, m.sent),
           "uplink_bytes_total": clock.cum_bits_up / 8, "acceptance": m.draft_acceptance_rate,
           "mean_acceptance_length": m.mean_acceptance_length, "measured_tok_s": m.tokens_per_second,
           "modelled_tok_s": m.generated_tokens / clock.cum_time if clock.cum_time else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""The in-process API under concurrent requests: 4 chat requests one after another, then the same 4 at once,
through ``gelato api``'s app over loopback HTTP with the real ``openai`` client, on the default pair.

``--no-batch`` verifies each request on its own (one target forward per request and round, as before the
in-process edge); the default verifies concurrent requests' rounds in one batched target forward. Prints
throughput (completion tokens per wall second, measured) and the concurrent / sequential speed-up.

    python benchmarks/bench_api_concurrency.py [--no-batch] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

PROMPTS = ("Write a short poem about autumn leaves.", "Describe a sunrise over the ocean.",
           "Write a short story about a friendly robot.", "Explain why the sky is blue.")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--policy", default="static-4")
    args = ap.parse_args(argv)

    import torch
    from openai import OpenAI

    from gelato.api.backend import Backend
    from gelato.api.respond import Limits
    from gelato.api.server import ApiServerThread
    from gelato.api.speculative import Speculation
    from gelato.models.loading import load_pair
    from gelato.models.pairs import resolve_pair_dirs

    torch.set_num_threads(1)
    draft, target, tok = load_pair(*resolve_pair_dirs(None, None))
    backend = Backend(draft, tok, target=target, model_name="gelato", batch=not args.no_batch)
    with ApiServerThread(backend, Speculation(args.policy, None, None, "compact"), Limits(max_concurrent=8)) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)

        def ask(prompt: str) -> int:
            r = client.chat.completions.create(model="gelato", messages=[{"role": "user", "content": prompt}],
                                               max_tokens=args.max_tokens, temperature=0)
            return r.usage.completion_tokens

        ask("Hello")  # warm up
        t = time.perf_counter()
        seq_tokens = sum(ask(p) for p in PROMPTS)
        seq_s = time.perf_counter() - t
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            t = time.perf_counter()
            conc_tokens = sum(pool.map(ask, PROMPTS))
            conc_s = time.perf_counter() - t
    out = {"batched": not args.no_batch, "policy": args.policy, "max_tokens": args.max_tokens,
           "sequential_s": seq_s, "sequential_tokens": seq_tokens, "sequential_tok_s": seq_tokens / seq_s,
           "concurrent_s": conc_s, "concurrent_tokens": conc_tokens, "concurrent_tok_s": conc_tokens / conc_s,
           "speedup": (conc_tokens / conc_s) / (seq_tokens / seq_s)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

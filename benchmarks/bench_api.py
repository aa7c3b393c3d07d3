"""API overhead: the same greedy generations in process and through ``gelato api`` over loopback HTTP.

Per request: the round loop called directly (``generate_speculative``), a whole ``/v1/completions``
response, and a streamed one (time to first chunk and to the end), on the built-in pair, with one
request at a time and then ``--concurrency`` at once. Prints a table and, with ``--json``, the figures.

    python benchmarks/bench_api.py --requests 10 --max-tokens 48 --json bench_api.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

PROMPT = "Question: A baker makes 12 cakes a day and sells 9. How many cakes are left after 3 days?\nAnswer:"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch
    from openai import OpenAI

    from gelato.api.backend import Backend
    from gelato.api.respond import Limits
    from gelato.api.server import ApiServerThread
    from gelato.api.speculative import Speculation
    from gelato.decoding.sampling import SamplingParams
    from gelato.generation import generate_speculative
    from gelato.models.loading import load_pair, shared_vocab_size
    from gelato.models.pairs import pair_dirs
    from gelato.policies import StaticPolicy

    torch.set_num_threads(1)
    draft, target, tok = load_pair(*pair_dirs("gsm8k"))
    ids = tok(PROMPT)["input_ids"]
    vocab = shared_vocab_size(draft, target)

    def direct() -> float:
        t = time.perf_counter()
        generate_speculative(draft, target, ids, SamplingParams(), StaticPolicy(4), args.max_tokens,
                             tok.eos_token_id, vocab_size=vocab)
        return time.perf_counter() - t

    backend = Backend(draft, tok, target=target, model_name="gsm8k")
    with ApiServerThread(backend, Speculation("static-4", None, None, "compact"),
                         Limits(max_concurrent=max(8, args.concurrency))) as srv:
        client = OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
        kw = dict(model="gsm8k", prompt=PROMPT, max_tokens=args.max_tokens, temperature=0)

        def whole() -> float:
            t = time.perf_counter()
            client.completions.create(**kw)
            return time.perf_counter() - t

        def streamed() -> tuple[float, float]:
            t = time.perf_counter()
            first = None
            for _ in client.completions.create(stream=True, **kw):
                first = first or time.perf_counter() - t
            return first, time.perf_counter() - t

        whole(), direct()  # warm up
        rows = {"direct_s": [direct() for _ in range(args.requests)],
                "http_whole_s": [whole() for _ in range(args.requests)]}
        s = [streamed() for _ in range(args.requests)]
        rows["http_stream_first_chunk_s"] = [a for a, _ in s]
        rows["http_stream_total_s"] = [b for _, b in s]
        with ThreadPoolExecutor(args.concurrency) as pool:
            t = time.perf_counter()
            list(pool.map(lambda _: whole(), range(args.requests)))
            rows[f"http_{args.concurrency}_concurrent_wall_s"] = [time.perf_counter() - t]
    medians = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{args.requests} requests x {args.max_tokens} tokens, greedy, static K=4, built-in gsm8k pair")
    for k, v in medians.items():
        print(f"  {k:34s} {v * 1e3:9.1f} ms")
    print(f"  HTTP overhead per whole request    {(medians['http_whole_s'] - medians['direct_s']) * 1e3:9.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "median": medians,
                                         "samples": rows}, indent=2))


if __name__ == "__main__":
    main()

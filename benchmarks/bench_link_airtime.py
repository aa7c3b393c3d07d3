"""Modelled vs measured airtime of the same networked run, side by side.

One generation on the built-in pair runs device -> link emulator -> edge over gRPC. The link shapes the
real bytes at fixed rates (the paper's 1 MHz uplink at its mean channel gain, and the matching downlink),
so its measured airtime is wire bytes / rate. The modelled clock charges payload bits / rate, where the
payload is the encoded DraftUp / VerdictDown messages. The difference is the HTTP/2 + gRPC framing the
model does not charge (headers, frame and length prefixes, the Open/Close calls).

    python benchmarks/bench_link_airtime.py [--bandwidth-mhz 1] [--tokens 96] [--json]
"""

from __future__ import annotations

import argparse
import json

import torch
from rich.console import Console
from rich.table import Table

from gelato.data.workloads import format_for_pair, load_gsm8k
from gelato.decoding.sampling import SamplingParams
from gelato.device.client import RemoteVerifier
from gelato.edge.process import EdgeServerThread
from gelato.edge.server import EdgeConfig, EdgeServer
from gelato.generation import DraftModelProposer, generate
from gelato.generation.loop import target_only_generate
from gelato.link.proxy import LinkConfig, LinkThread
from gelato.models import CachedCausalLM, load_pair, shared_vocab_size
from gelato.models.pairs import fast_pair_dirs
from gelato.policies import StaticPolicy
from gelato.system.config import SystemConfig
from gelato.wire.fingerprint import tokenizer_fingerprint


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bandwidth-mhz", type=float, default=1.0)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    draft, target, tok = load_pair(*fast_pair_dirs())
    vocab = shared_vocab_size(draft, target)
    prompt = tok(format_for_pair(load_gsm8k("test", limit=1)[0], "gsm8k"))["input_ids"]
    mean = SystemConfig.paper(bandwidth_mhz=args.bandwidth_mhz).build_clock(0).channel.mean_state()
    params = SamplingParams()
    fingerprint = tokenizer_fingerprint(tok)
    with EdgeServerThread(EdgeServer(target, fingerprint=fingerprint, vocab_size=vocab, config=EdgeConfig())) as edge:
        link_cfg = LinkConfig(bandwidth_mhz=None, uplink_bps=mean.uplink_bps, downlink_bps=mean.downlink_bps,
                              delay_s=0.0)
        with LinkThread(edge.address, link_cfg) as link:
            verifier = RemoteVerifier(link.address, params, fingerprint=fingerprint)
            proposer = DraftModelProposer(CachedCausalLM(draft, vocab), params)
            result = generate(prompt, proposer, verifier, StaticPolicy(args.k), args.tokens,
                                          tok.eos_token_id)
            verifier.close()
            wire = link.stats()
    reference = target_only_generate(CachedCausalLM(target, vocab), prompt, params, args.tokens, tok.eos_token_id)
    up_payload, down_payload = verifier.stats.up_bytes, verifier.stats.down_bytes
    rows = {}
    for name, rate, payload, stats in (("uplink", mean.uplink_bps, up_payload, wire["up"]),
                                       ("downlink", mean.downlink_bps, down_payload, wire["down"])):
        rows[name] = {"rate_bps": rate, "payload_bytes": payload, "modelled_s": 8 * payload / rate,
                      "wire_bytes": stats["bytes"], "measured_s": stats["airtime_s"]}
    identical = result.token_ids == reference.token_ids
    if args.json:
        print(json.dumps({"rounds": result.metrics.rounds, "tokens": len(result.token_ids),
                          "bandwidth_mhz": args.bandwidth_mhz, "identical": identical, **rows}))
        return
    table = Table(title=f"airtime of one run ({result.metrics.rounds} rounds, {len(result.token_ids)} tokens, "
                        f"{args.bandwidth_mhz:g} MHz paper link at its mean gain)")
    for col in ("direction", "rate Mbit/s", "payload B", "modelled ms", "wire B", "measured ms", "measured/modelled"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        modelled = r["modelled_s"]
        table.add_row(name, f"{r['rate_bps'] / 1e6:.2f}", f"{r['payload_bytes']}", f"{modelled * 1e3:.2f}",
                      f"{r['wire_bytes']}", f"{r['measured_s'] * 1e3:.2f}",
                      f"{r['measured_s'] / modelled:.1f}x" if modelled else "-")
    console = Console()
    console.print(table)
    console.print(f"output identical to target-only decoding: {identical}")


if __name__ == "__main__":
    main()

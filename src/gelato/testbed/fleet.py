"""Many devices on one edge: measured figures for N concurrent devices, and a model up to 64 devices fitted to the
edge's measured batch-cost curve (docs/testbed.md, "Many devices").

Measured, for each N and policy, from one run of N device sessions at once through one link emulator:

* ``per_device_tokens_per_second``: each device's tokens over its own decode time, averaged;
* ``edge_tokens_per_second``: every device's tokens over the run's wall time;
* ``forwards_per_token``: the edge's target forwards (its own counter) per generated token; batching N
  sessions into one forward divides it by up to N.

Modelled (:func:`model_fleet`): the edge's forward time as a line in the tokens it carries,
``forward_ms(n) = a + b n`` (least squares over every measured forward: batch x the session's tokens fed), and a
device's time per token at N devices = its measured time per token at N = 1 with the edge forward it waited for
replaced by ``forward_ms(N x tokens per forward at N = 1)``: every device in every forward, the edge never idle.
"""

from __future__ import annotations

import numpy as np

MODEL_DEVICES = (1, 2, 4, 8, 16, 32, 64)


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else 0.0


def fleet_figures(raw: dict) -> dict:
    """One measured fleet run (``DeviceWorker.run_fleet``'s reply) as its figures."""
    prompts = raw["prompts"]
    tokens = sum(len(p["token_ids"]) for p in prompts)
    fed = raw["forward_samples"]
    return {"devices": raw["devices"], "tokens": tokens, "wall_s": raw["wall_s"],
            "per_device_tokens_per_second": _mean(len(p["token_ids"]) / p["generate_s"] for p in prompts
                                                  if p["generate_s"] > 0),
            "edge_tokens_per_second": tokens / raw["wall_s"] if raw["wall_s"] > 0 else 0.0,
            "forwards": raw["forwards"], "forwards_per_token": raw["forwards"] / tokens if tokens else 0.0,
            "batch_mean": _mean(b for _, b, _ in fed),
            "forward_ms_mean": _mean(ms for ms, _, _ in fed),
            "tokens_per_forward": _mean(b * n for _, b, n in fed),
            "token_ids": [p["token_ids"] for p in prompts]}  # device j's answer to prompt j


def batch_cost_curve(samples: list[tuple[float, int, int]]) -> dict:
    """``forward_ms = a + b * tokens`` fitted (least squares, a and b >= 0) to (forward ms, batch, tokens fed by the
    round's own session) samples, a forward's tokens taken as batch x tokens fed."""
    if not samples:
        return {"a_ms": 0.0, "b_ms_per_token": 0.0, "samples": 0}
    x = np.array([b * n for _, b, n in samples], dtype=float)
    y = np.array([ms for ms, _, _ in samples], dtype=float)
    if np.ptp(x) == 0:
        return {"a_ms": float(y.mean()), "b_ms_per_token": 0.0, "samples": len(samples)}
    b, a = np.polyfit(x, y, 1)
    b = max(0.0, float(b))
    a = max(0.0, float((y - b * x).mean()))
    return {"a_ms": a, "b_ms_per_token": b, "samples": len(samples)}


def model_fleet(single: dict, curve: dict, devices=MODEL_DEVICES) -> list[dict]:
    """Per-device and edge tok/s for ``devices`` devices, from one policy's N = 1 figures and the batch-cost curve."""
    a, b = curve["a_ms"], curve["b_ms_per_token"]
    rate_1 = single["per_device_tokens_per_second"]
    tpt = 1.0 / rate_1 if rate_1 > 0 else 0.0  # seconds per token at N = 1
    fpt = single["forwards_per_token"]
    per_forward = single["tokens_per_forward"]
    rest_s = max(0.0, tpt - fpt * (a + b * per_forward) / 1e3)  # time per token outside the edge's forward
    rows = []
    for n in devices:
        t_token = rest_s + fpt * (a + b * n * per_forward) / 1e3
        rate = 1.0 / t_token if t_token > 0 else 0.0
        rows.append({"devices": n, "per_device_tokens_per_second": rate, "edge_tokens_per_second": n * rate,
                     "forwards_per_token": fpt / n})
    return rows

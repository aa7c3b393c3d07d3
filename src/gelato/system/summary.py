"""The one summary of a run in the modelled clock: time, device energy by term, rates and payload per token.

Wall-clock metrics of a single generation are ``gelato.decoding.metrics.summarize_rounds``; this is the
modelled counterpart, over the clock's charge terms.
"""

from __future__ import annotations

from collections.abc import Sequence

from gelato.constants import BUDGET_TOLERANCE, within_energy_budget


def summarize_charged_rounds(rows: Sequence[dict], tokens: int, e_bar: float | None = None,
                             tolerance: float = BUDGET_TOLERANCE) -> dict:
    """Totals and rates of a run's charged rounds.

    ``rows``: one dict per round with the round's fields (``budget``, ``drafted``, ``sent``, ``accepted``) and
    the clock's charge terms (``t_round``, ``e_draft`` ... ``e_idle``, ``bits_up``, ``bits_down``, ``e_edge``),
    as ``ModelledClock.rows`` and the runner's rows hold them; ``tokens``: tokens generated over those rounds.
    With ``e_bar``, whether the mean round energy is within ``e_bar (1 + tolerance)``.
    """
    n = len(rows)
    time_s = sum(r.get("t_round", 0.0) for r in rows)
    terms = {k: sum(r.get(f"e_{k}", 0.0) for r in rows) for k in ("draft", "uplink", "downlink", "idle")}
    energy = sum(terms.values())
    sent = sum(r["sent"] for r in rows)
    summary = {
        "rounds": n, "tokens": tokens, "modelled_seconds": time_s, "device_joules": energy,
        "tokens_per_second": tokens / time_s if time_s else 0.0,
        "joules_per_token": energy / tokens if tokens else 0.0,
        "joules_per_token_split": {k: v / tokens if tokens else 0.0 for k, v in terms.items()},
        "mean_round_energy": energy / n if n else 0.0,
        "mean_acceptance_length": tokens / n if n else 0.0,
        "draft_acceptance_rate": sum(r["accepted"] for r in rows) / sent if sent else 0.0,
        "drafted": sum(r["drafted"] for r in rows), "sent": sent,
        "discarded": sum(r["drafted"] - r["sent"] for r in rows),
        "predrafted": sum(r.get("predrafted", 0) for r in rows),  # drafted ahead during the wait (pipelined)
        "predraft_used_rounds": sum(1 for r in rows if r.get("predraft_used")),
        "carried": sum(r.get("carried", 0) for r in rows),  # pre-drafted tokens that headed the next draft
        "mean_budget": sum(r["budget"] for r in rows) / n if n else 0.0,
        "uplink_bytes_per_token": sum(r.get("bits_up", 0) for r in rows) / 8 / tokens if tokens else 0.0,
        "downlink_bytes_per_token": sum(r.get("bits_down", 0) for r in rows) / 8 / tokens if tokens else 0.0,
        "edge_joules": sum(r.get("e_edge", 0.0) for r in rows),
    }
    if e_bar is not None:
        summary["e_bar"] = e_bar
        summary["energy_constraint_met"] = within_energy_budget(summary["mean_round_energy"], e_bar, tolerance)
    return summary

"""The report's conclusions are computed from its numbers: change a number and the sentence changes with it."""

from __future__ import annotations

from gelato.constants import E_BAR_J
from gelato.experiments.report.analysis import SourceResults
from gelato.experiments.report.artifacts import SourceArtifacts
from gelato.experiments.report.narrative import (
    budget_breakers,
    differences,
    headline_dependence,
    own_pair_charging,
    slack_budget,
    v_effect,
)


def row(variant: str, group: str, tps: float, jpt: float, energy: float, source: str = "synthetic", **extra) -> dict:
    return {"source": source, "sweep": "fig5ab", "bandwidth_mhz": 1.0, "t_verify_ms": 100.0, "variant": variant,
            "policy": variant, "group": group, "top_p": 0.99995, "seeds": 5, "rounds": 1000,
            "tokens_per_second": tps, "joules_per_token": jpt, "mean_round_energy": energy,
            "mean_acceptance_length": 3.0, "draft_acceptance_rate": 0.7, "mean_budget": 5.0,
            "uplink_bytes_per_token": extra.pop("uplink", 1000.0), **extra}


def synthetic(worst_tps: float, best_tps: float, gelato_energy: float = 0.8, static_energy: float = 1.0,
              source: str = "synthetic") -> SourceResults:
    rows = [row("gelato-paper", "gelato", 20.0, 0.20, gelato_energy, source),
            row("gelato-improved", "gelato", 21.0, 0.20, gelato_energy, source),
            row("static-7@0.99998", "paper-baseline", worst_tps, 0.30, static_energy, source),
            row("static-5@0.99995", "paper-baseline", best_tps, 0.21, static_energy, source),
            row("dssd", "paper-baseline", (worst_tps + best_tps) / 2, 0.25, 0.9, source, uplink=20.0)]
    return SourceResults(SourceArtifacts(source, summary={"fig5ab": rows}, seeds={"fig5ab": None}), E_BAR_J)


def test_headline_sentence_follows_the_spread_between_worst_and_best_baseline():
    spread = headline_dependence(synthetic(worst_tps=12.0, best_tps=19.8))
    assert "Headline gains depend on the baseline chosen" in spread
    assert "+66.7%" in spread  # 20 / 12 - 1, computed, not quoted
    assert "only the worst-baseline comparison comes near it" in spread  # the paper reports +64.98%
    close = headline_dependence(synthetic(worst_tps=19.5, best_tps=19.8))
    assert "barely depend on the baseline chosen" in close
    assert "only the worst-baseline" not in close


def test_budget_sentences_follow_the_energies():
    assert "`static-7@0.99998`" in budget_breakers(synthetic(12.0, 19.8, static_energy=1.5), E_BAR_J)
    assert budget_breakers(synthetic(12.0, 19.8, static_energy=1.0), E_BAR_J) is None
    assert "does not bind" in slack_budget(synthetic(12.0, 19.8, gelato_energy=0.5), E_BAR_J)
    assert slack_budget(synthetic(12.0, 19.8, gelato_energy=1.15), E_BAR_J) is None


def test_own_pair_sentence_follows_slack_and_fastest_policy():
    own = synthetic(12.0, 19.8, gelato_energy=0.01, source="trace-own-pair")
    own.summary["fig5ab"].append(row("static-7@0.99995", "paper-baseline", 10.0, 0.3, 0.5, "trace-own-pair",
                                     uplink=20_000.0))
    text = own_pair_charging(own, E_BAR_J)
    assert "the energy constraint is slack" in text
    assert "`gelato-improved` at 1 of 1 points" in text and "matters as much as the payload format" in text
    own.summary["fig5ab"][4]["tokens_per_second"] = 30.0  # dssd becomes the fastest
    assert "payload format matters more than the draft-length controller" in own_pair_charging(own, E_BAR_J)
    over = synthetic(12.0, 19.8, gelato_energy=2.0, source="trace-own-pair")
    assert "binds at some points" in own_pair_charging(over, E_BAR_J)


def test_v_sentence_follows_the_throughput_change():
    def fig4(tps_v100: float) -> SourceResults:
        seeds = [{"source": "synthetic", "bandwidth_mhz": 5.0, "t_verify_ms": 100.0, "variant": v, "policy": "gelato-paper",
                  "group": "gelato", "top_p": 0.99995, "seed": 0, "rounds": 1000, "tokens": 100,
                  "tokens_per_second": tps, "joules_per_token": 0.2, "mean_round_energy": 1.2,
                  "mean_acceptance_length": 3.0, "draft_acceptance_rate": 0.7, "mean_budget": 5.0,
                  "uplink_bytes_per_token": 1000.0, "energy_ok": True}
                 for v, tps in (("gelato-paper V=10", 20.0), ("gelato-paper V=100", tps_v100))]
        traj = [{"variant": v, "round": 0, "budget": 5, "queue_at_budget": 0.5, "seed": 0}
                for v in ("gelato-paper V=10", "gelato-paper V=100")]
        meta = {"runs": {"fig4": {"bandwidth_mhz": 5.0}}}
        return SourceResults(SourceArtifacts("synthetic", meta, fig4_traj=traj, fig4_seeds=seeds), E_BAR_J)

    assert "V changes little" in v_effect(fig4(20.5), E_BAR_J)
    changed = v_effect(fig4(24.0), E_BAR_J)
    assert "V changes the choice" in changed and "+20.0%" in changed


def test_differences_only_states_what_the_data_supports():
    paragraphs = differences([synthetic(12.0, 19.8)], [], E_BAR_J)
    assert any(p.startswith("**Headline gains depend") for p in paragraphs)
    assert not any("Own-pair" in p for p in paragraphs)  # no own-pair source, no own-pair conclusion

"""Measured and modelled figures per policy, from the device's raw measurements, the link's counters and the
modelled replay (see docs/testbed.md for every field)."""

from __future__ import annotations

from gelato.constants import within_energy_budget
from gelato.testbed.presets import PowerProfile
from gelato.wire.payload import GRPC_FRAMING_BYTES, stream_framing_bytes

REFERENCES = ("edge-streaming", "edge-autoregressive")
PHASES = ("draft", "uplink", "verify", "downlink", "waiting", "device_other")


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def measured_figures(raw: dict, delay_s: float, profile: PowerProfile, e_bar: float) -> dict:
    prompts, link = raw["prompts"], raw["link"]
    tokens = sum(len(p["token_ids"]) for p in prompts)
    rounds = sum(p["rounds"] for p in prompts)
    generate_s = sum(p["generate_s"] for p in prompts)
    total_s = sum(p["open_s"] + p["generate_s"] for p in prompts)
    draft_s = sum(p["metrics"]["draft_seconds"] for p in prompts)
    call_s = sum(p["metrics"]["verify_seconds"] for p in prompts)
    other_s = sum(p["metrics"]["other_seconds"] for p in prompts)
    up_air, down_air = link["up"]["airtime_s"], link["down"]["airtime_s"]
    # per round: uplink/downlink = the link's airtime (session opens included) + propagation; verify = the edge's
    # handler (queue + forward + verification rules, as the edge reports it); waiting = the rest of the verify
    # call (gRPC both ways, the device's encoding and decoding, the link proxy, OS scheduling)
    split = {"draft": draft_s, "uplink": up_air + rounds * delay_s, "verify": raw["edge_server_s"],
             "downlink": down_air + rounds * delay_s, "device_other": other_s}
    split["waiting"] = call_s - split["uplink"] - split["verify"] - split["downlink"]
    cpu = raw["cpu_s"]
    idle = max(0.0, total_s - cpu - up_air - down_air)
    energy = {"compute": profile.compute_w * cpu, "transmit": profile.transmit_w * up_air,
              "receive": profile.receive_w * down_air, "idle": profile.idle_w * idle}
    joules = sum(energy.values())
    # every message is framed (a burst: one request up, one message down per token)
    up_msgs = sum(p.get("up_messages", p["rounds"]) for p in prompts)
    down_msgs = sum(p.get("down_messages", p["rounds"]) for p in prompts)
    protocol_up = sum(p["rounds_up_bytes"] for p in prompts) + stream_framing_bytes(up_msgs, up_msgs)
    protocol_down = sum(p["rounds_down_bytes"] for p in prompts) + stream_framing_bytes(down_msgs, up_msgs)
    return {"tokens": tokens, "rounds": rounds, "tokens_per_second": _ratio(tokens, generate_s),
            "end_to_end_tokens_per_second": _ratio(tokens, total_s),
            "ttft_s": _ratio(sum(p["ttft_s"] for p in prompts), len(prompts)),
            "mean_acceptance_length": _ratio(tokens, rounds),
            "per_round_ms": {k: 1e3 * _ratio(split[k], rounds) for k in PHASES},
            "link_bytes_up": link["up"]["bytes"], "link_bytes_down": link["down"]["bytes"],
            "protocol_bytes_up": protocol_up, "protocol_bytes_down": protocol_down,
            "session_bytes_up": link["up"]["bytes"] - protocol_up,
            "session_bytes_down": link["down"]["bytes"] - protocol_down,
            "link_airtime_s": {"up": up_air, "down": down_air},
            "device_cpu_s": cpu, "wall_s": total_s, "energy_j": joules, "energy_terms_j": energy,
            "j_per_token": _ratio(joules, tokens), "j_per_round": _ratio(joules, rounds),
            "energy_budget_kept": within_energy_budget(_ratio(joules, rounds), e_bar),
            "retries": sum(p["retries"] for p in prompts), "reopens": sum(p["reopens"] for p in prompts),
            "planner": raw.get("planner")}  # what the policy planned with: its measured planner's fit


def modelled_figures(m: dict, prompt_tokens: list[int], delay_s: float, verify_profile: dict, up_bps: float,
                     e_bar: float) -> dict:
    rounds, tokens = m["rounds"], m["tokens"]
    split = {"draft": m["t_draft"], "uplink": m["t_uplink"] + m["t_propagation"] / 2, "verify": m["t_verify"],
             "downlink": m["t_downlink"] + m["t_propagation"] / 2, "waiting": 0.0, "device_other": 0.0}
    v = verify_profile
    # the session open: the prompt up (4 bytes per id + framing), a prefill forward, the reply down
    opens = [2 * delay_s + 8 * (4 * n + GRPC_FRAMING_BYTES) / up_bps + v["scale"] * (v["a"] + v["b"] * n)
             for n in prompt_tokens]
    ttft = [o + p["first_round_s"] for o, p in zip(opens, m["prompts"])]
    return {"tokens": tokens, "rounds": rounds, "tokens_per_second": _ratio(tokens, m["time_s"]),
            "end_to_end_tokens_per_second": _ratio(tokens, m["time_s"] + sum(opens)),
            "ttft_s": _ratio(sum(ttft), len(ttft)),
            "per_round_ms": {k: 1e3 * _ratio(split[k], rounds) for k in PHASES},
            "billed_bytes_up": m["bytes_up"], "billed_bytes_down": m["bytes_down"],
            "energy_j": m["energy_j"], "j_per_token": _ratio(m["energy_j"], tokens),
            "j_per_round": _ratio(m["energy_j"], rounds), "energy_budget_kept": within_energy_budget(_ratio(m["energy_j"], rounds), e_bar)}


def assemble(cfg, raw: dict[str, dict], modelled: dict, profile: PowerProfile) -> dict:
    link = cfg.link
    channel = link.channel_config()
    up_bps = link.uplink_bps or channel.uplink_bandwidth_hz  # the open's uplink time is tiny either way
    policies = {}
    # the baseline every gain is quoted against: the edge streaming its own answer (what a user runs without
    # gelato), else the paper's per-token edge-only rounds
    ref_name = next((n for n in REFERENCES if n in raw and "error" not in raw[n]), None)
    reference = raw.get(ref_name)
    for name, r in raw.items():
        if "error" in r:
            policies[name] = {"error": r["error"]}
            continue
        meas = measured_figures(r, link.delay_s, profile, cfg.e_bar)
        mod = modelled_figures(modelled["policies"][name], [p["prompt_tokens"] for p in r["prompts"]], link.delay_s,
                               modelled["policies"][name]["verify_profile"], up_bps, cfg.e_bar)
        fed = modelled["policies"][name]
        entry = {"payload": r["payload"], "measured": meas, "modelled": mod,
                 "fed": {"draft_scale": fed["draft_scale"], "verify_profile": fed["verify_profile"]},
                 "error": {"tokens_per_second": _ratio(mod["tokens_per_second"], meas["tokens_per_second"]) - 1,
                           "ttft_s": _ratio(mod["ttft_s"], meas["ttft_s"]) - 1,
                           "energy_j": _ratio(mod["energy_j"], meas["energy_j"]) - 1},
                 "token_ids": [p["token_ids"] for p in r["prompts"]]}
        if reference is not None and cfg.temperature == 0:
            entry["same_output_as_reference"] = entry["token_ids"] == [p["token_ids"] for p in reference["prompts"]]
        policies[name] = entry
    if ref_name is not None:
        ref = policies[ref_name]
        for entry in policies.values():
            if "measured" in entry:
                entry["over_reference"] = {side: _ratio(entry[side]["tokens_per_second"],
                                                        ref[side]["tokens_per_second"]) for side in ("measured",
                                                                                                    "modelled")}
    return {"reference": ref_name, "link": link.to_dict(), "power_profile": profile.to_dict(), "e_bar_j_per_round": cfg.e_bar,
            "workload": {"name": cfg.workload, "prompts": cfg.prompts, "max_new_tokens": cfg.max_new_tokens,
                         "temperature": cfg.temperature, "top_k": cfg.top_k, "top_p": cfg.top_p, "seed": cfg.seed},
            "draft_profile": modelled["draft_profile"], "verify_profile": modelled["verify_profile"],
            "measured_vs_modelled": "measured: wall clock, the link's counters, the device process's CPU time; "
                                    "modelled: the ModelledClock charged with the same rounds, fed the measured "
                                    "compute costs (draft calibration scaled to the measured draft time, verify "
                                    "fitted to the edge's reported forwards) and the link preset",
            "policies": policies}

"""The testbed's device process: ``python -m gelato.testbed.device SPEC.json``.

It loads the draft, calibrates its forward cost (on its own pinned core), prints ``@@ready``, then reads one
JSON command per stdin line and answers one ``@@{json}`` line each:

* ``{"policy": NAME, "edge": HOST:PORT}``: run the workload through the real round loop (the engine's
  ``gelato.generation.generate`` over a :class:`RemoteVerifier`), measuring wall time,
  time to first token, CPU-seconds of this process and every round's phases; every round is recorded;
* ``{"policy": NAME, "edge": HOST:PORT, "devices": N, "metrics_at": HOST:PORT}``: N sessions at once (threads),
  device ``j`` on prompt ``j``, with the edge's own counters read before and after (``gelato.testbed.fleet``);
* ``{"model": true}``: fit the edge's verify cost to the forward times the edge reported in every round of
  every policy, scale the draft's calibrated profile to the measured draft time, and charge each policy's
  recorded rounds to a :class:`ModelledClock` with the link preset's channel: the modelled prediction;
* ``{"quit": true}``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from gelato.decoding.payload_modes import DEFAULT_PAYLOAD, PAYLOAD_CHOICES, PayloadMode
from gelato.decoding.sampling import SamplingParams
from gelato.decoding.types import RoundCharge
from gelato.device.edge_client import EdgeClient
from gelato.device.pair import remote_pair
from gelato.generation import generate
from gelato.models.loading import load_causal_lm
from gelato.policies.registry import make_policy, policy_spec
from gelato.system.channel import ChannelConfig
from gelato.system.clock import ModelledClock
from gelato.system.compute import MeasuredProfile, calibrate_profile, draft_seconds, next_pending
from gelato.system.config import SystemConfig
from gelato.system.measured import MeasuredPlanner, edge_samples
from gelato.testbed.presets import power_profile
from gelato.wire.codec import payload_config
from gelato.wire.payload import GRPC_FRAMING_BYTES, PayloadConfig


class Recorder:
    """A RoundClock that charges nothing and keeps each round's inputs for the modelled replay:
    ``rounds`` holds ``(starts_prompt, record, draft, verdict, predrafted)``, ``starts_prompt`` True for the
    first round after ``begin_prompt`` (where the replay calls the clock's ``begin_prompt``)."""

    def __init__(self, keep_q: bool) -> None:
        self.keep_q = keep_q
        self.rounds: list[tuple] = []
        self._new_prompt = False

    def begin_prompt(self) -> None:
        self._new_prompt = True

    def begin_round(self, ctx) -> None:
        return None

    def charge(self, record, draft, verdict, predrafted: int = 0) -> None:
        if not self.keep_q:
            draft = dataclasses.replace(draft, q=None)
        self.rounds.append((self._new_prompt, record, draft, verdict, predrafted))
        self._new_prompt = False

    def replay(self, clock: ModelledClock) -> list[RoundCharge]:
        """Charge the recorded rounds to ``clock`` as the loop would have live (a new prompt where one began)."""
        charges = []
        for starts_prompt, record, draft, verdict, predrafted in self.rounds:
            if starts_prompt:
                clock.begin_prompt()
            clock.begin_round()
            charges.append(clock.charge(record, draft, verdict, predrafted=predrafted))
        return charges


def first_token_s(charge: RoundCharge, record) -> float:
    """When a prompt's first round delivers its first token: the whole round, or a burst's first step (its
    request up, the propagation, one edge step and one message down)."""
    n = record.streamed
    if not n:
        return charge.t_round
    return charge.t_uplink + charge.t_propagation + (charge.t_verify + charge.t_downlink) / n


def live_payload(policy: str, params: SamplingParams, chosen: str | None = None) -> PayloadConfig:
    """The payload a live session of ``policy`` sends: its registry mode where the wire has it, else ``chosen``
    (the run's ``--payload``), else the default."""
    mode = policy_spec(policy).payload_mode
    return payload_config(mode if mode in PAYLOAD_CHOICES else (chosen or DEFAULT_PAYLOAD), params)


class DeviceWorker:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        torch.set_num_threads(int(spec["threads"]))
        self.params = SamplingParams(**spec["sampling"])
        self.model = load_causal_lm(spec["draft_dir"], "float32")
        self.draft_profile = calibrate_profile(self.model, n_values=(1, 2, 3), ctx_values=(16, 64, 160), repeats=3)
        self.channel = ChannelConfig.model_validate(spec["channel"])
        self.runs: dict[str, dict] = {}  # policy -> {"recorders": [...], "payload": ..., "edge_samples": [...]}
        self.edge_samples: list[tuple[int, int, float]] = []  # (tokens fed, context, seconds) reported by the edge

    # ------------------------------------------------------------------ one policy, live
    def predictor(self, name: str) -> MeasuredPlanner:
        """What a live policy plans with, as in every live run: a planner fitted from its own measured rounds
        (across its prompts), its prior the clock fed the costs measured so far (the paper's before any)."""
        prior = self.clock(live_payload(name, self.params, self.spec.get("payload"))) if self.edge_samples else SystemConfig.paper().build_clock()
        return MeasuredPlanner(prior, device_power=power_profile(self.spec["power_profile"]).device_power())

    def run_prompt(self, name: str, edge: str, i: int, planner: MeasuredPlanner) -> tuple[dict, Recorder, list, list]:
        """Prompt ``i`` of the workload through one device session of ``name``: its figures, its recorder (for the
        modelled replay) and its rounds' measurements."""
        spec, params = self.spec, self.params
        prompt = spec["prompts"][i % len(spec["prompts"])]
        payload = live_payload(name, params, self.spec.get("payload"))
        policy = make_policy(name, predictor=planner, energy_budget=spec["e_bar"])
        client = EdgeClient(edge)
        recorder = Recorder(keep_q=payload.mode in (PayloadMode.PAPER_TOPP, PayloadMode.DSSD)
                            or (payload.mode == PayloadMode.COMPACT and not params.greedy))  # what bills q
        verifier = None
        try:
            t0 = time.perf_counter()
            proposer, verifier = remote_pair(self.model, client, params, prompt["ids"],
                                             fingerprint=spec["fingerprint"], seed=spec["seed"] + i, payload=payload,
                                             device_name="testbed", max_new_tokens=spec["max_new_tokens"],
                                             rpc_timeout=60.0, stop_ids=[] if spec["eos"] is None else [spec["eos"]])
            if spec.get("draft_top_k") is not None and payload.mode == PayloadMode.COMPACT:
                proposer.draft_top_k = int(spec["draft_top_k"])  # compact: the q~ sent (0: the whole q)
            t_open = time.perf_counter() - t0
            first: list[float] = []  # the first token's arrival: a round's commit, or a burst's first token
            arrived = (lambda *_: first.append(time.perf_counter() - t0) if not first else None)
            result = generate(prompt["ids"], proposer, verifier, policy, spec["max_new_tokens"],
                              eos_token_id=spec["eos"], clock=recorder, background_verify=True, on_round=arrived,
                              on_token=arrived)
        finally:
            if verifier is not None:
                verifier.close()
            client.close()
        rounds = [r.measured for r in result.rounds]  # each round's measurement, on its record
        samples = [sample for record in result.rounds for sample in edge_samples(record)]
        m = result.metrics
        figures = {"id": prompt["id"], "prompt_tokens": len(prompt["ids"]), "token_ids": result.token_ids,
                   "open_s": t_open, "ttft_s": first[0] if first else t_open, "generate_s": m.wall_seconds,
                   "rounds": m.rounds, "stop_reason": result.stop_reason, "metrics": m.to_dict(),
                   "rounds_up_bytes": sum(t.up_bytes for t in rounds),
                   "rounds_down_bytes": sum(t.down_bytes for t in rounds),
                   "up_messages": sum(t.up_messages for t in rounds),
                   "down_messages": sum(t.down_messages for t in rounds),
                   "retries": verifier.stats.retries, "reopens": verifier.stats.reopens}
        # the edge's forwards as (ms, batch, tokens this session fed): a round's one forward, or each step of a burst
        figures["forwards"] = [f for r in result.rounds for f in (
            [(r.measured.forward_ms / r.streamed, r.measured.batch, 1)] * r.streamed if r.streamed
            else [(r.measured.forward_ms, r.measured.batch, r.sent + 1)])]
        return figures, recorder, rounds, samples

    def run_policy(self, name: str, edge: str) -> dict:
        """Every prompt of the workload in turn, one device session each."""
        prompts, recorders, measured = [], [], []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        first_sample = len(self.edge_samples)
        planner = self.predictor(name)
        for i in range(len(self.spec["prompts"])):
            figures, recorder, rounds, samples = self.run_prompt(name, edge, i, planner)
            figures.pop("forwards")  # the fleet's batch-cost samples; a single device's forwards are in samples
            self.edge_samples.extend(samples)
            prompts.append(figures)
            recorders.append(recorder)
            measured.append(rounds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        self.runs[name] = {"recorders": recorders, "payload": live_payload(name, self.params, self.spec.get("payload")),
                           "edge_samples": self.edge_samples[first_sample:]}
        rounds = [t for ts in measured for t in ts]
        return {"policy": name, "payload": live_payload(name, self.params, self.spec.get("payload")).mode, "cpu_s": cpu, "wall_s": wall,
                "prompts": prompts, "edge_forward_s": sum(t.forward_ms for t in rounds) / 1e3,
                "edge_server_s": sum(t.server_ms for t in rounds) / 1e3,
                "edge_queue_s": sum(t.queue_ms for t in rounds) / 1e3,
                "rpc_s": sum(t.rpc_ms for t in rounds) / 1e3, "planner": planner.parameters()}

    def run_fleet(self, name: str, edge: str, devices: int, metrics_at: str) -> dict:
        """``devices`` sessions of ``name`` at once (threads of this process, device ``j`` on prompt ``j``), against
        one edge; the edge's own counters (read at ``metrics_at``, not through the link) before and after."""
        from concurrent.futures import ThreadPoolExecutor

        probe = EdgeClient(metrics_at)
        try:
            before = probe.metrics()
            wall0 = time.perf_counter()
            with ThreadPoolExecutor(devices) as pool:
                done = list(pool.map(lambda j: self.run_prompt(name, edge, j, self.predictor(name)), range(devices)))
            wall = time.perf_counter() - wall0
            after = probe.metrics()
        finally:
            probe.close()
        rows = [(figures, figures.pop("forwards")) for figures, *_ in done]
        return {"policy": name, "devices": devices, "wall_s": wall,
                "prompts": [figures for figures, _ in rows],
                "forwards": after["batches"] - before["batches"], "edge_tokens": after["tokens"] - before["tokens"],
                "rounds": after["rounds"] - before["rounds"],
                "forward_samples": [s for _, samples in rows for s in samples]}  # (forward ms, batch, tokens fed)

    # ------------------------------------------------------------------ the model
    def verify_profile(self, samples: list | None = None) -> MeasuredProfile:
        """The edge's cost of a round: its handler time (queue + forward + verification rules), as it reports,
        fitted over ``samples`` (default: every round so far)."""
        samples = self.edge_samples if samples is None else samples
        return MeasuredProfile.fit(samples, meta={"source": "round times reported by the edge handler",
                                                  "samples": len(samples)})

    def draft_scale(self, runs: list[dict] | None = None) -> float:
        """Measured draft wall time over the calibrated profile's prediction, over the unpipelined rounds of
        ``runs`` (default: every run); 0 when they have none."""
        measured = modelled = 0.0
        for run in (self.runs.values() if runs is None else runs):
            for rec in run["recorders"]:
                pending = 1
                for starts_prompt, record, draft, verdict, predrafted in rec.rounds:
                    if predrafted or draft.n_carried:
                        break
                    pending = 1 if starts_prompt else pending
                    measured += record.wall.draft
                    modelled += draft_seconds(self.draft_profile, draft.n_computed, draft.start, pending)
                    pending = next_pending(pending, draft.n_computed, verdict.accepted)
        return measured / modelled if modelled > 0 else 0.0

    def clock(self, payload: PayloadConfig, scale: float | None = None, samples: list | None = None) -> ModelledClock:
        framing = 8 * GRPC_FRAMING_BYTES
        pay = payload.model_copy(update={"session": 0, "header_bits_up": framing, "header_bits_down": framing})
        return ModelledClock(channel=self.channel, payload=pay, seed=self.spec["seed"],
                             draft_compute=self.draft_profile.scaled(scale or self.draft_scale() or 1.0),
                             verify_compute=self.verify_profile(samples),
                             device_power=power_profile(self.spec["power_profile"]).device_power(),
                             accounting="sequential", count_downlink_time=True, name="testbed")

    def modelled(self) -> dict:
        """Each policy's rounds charged to a clock fed that policy's own measured costs (the cores are shared
        with other jobs, so costs drift between policies): the edge's handler times of its rounds, and the draft
        profile scaled to its draft time (pipelined policies, whose draft time overlaps the wait: the scale of
        all unpipelined rounds)."""
        scale = self.draft_scale() or 1.0
        out = {"draft_profile": {**self.draft_profile.to_dict(), "scale": scale},
               "verify_profile": self.verify_profile().to_dict(), "policies": {}}
        for name, run in self.runs.items():
            own_scale = self.draft_scale([run]) or scale
            clock = self.clock(run["payload"], own_scale, run["edge_samples"])
            per_prompt = []
            for rec in run["recorders"]:
                t0, e0, n0 = clock.cum_time, clock.cum_energy, len(clock.records)
                charges = rec.replay(clock)
                per_prompt.append({"time_s": clock.cum_time - t0, "energy_j": clock.cum_energy - e0,
                                   "first_round_s": first_token_s(charges[0], rec.rounds[0][1]) if charges else 0.0,
                                   "rows": len(clock.records) - n0})
            rows = clock.rows
            total = lambda key: float(sum(r.get(key, 0.0) for r in rows))  # noqa: E731
            out["policies"][name] = {"draft_scale": own_scale, "verify_profile": self.verify_profile(
                                         run["edge_samples"]).to_dict(), "time_s": clock.cum_time, "energy_j": clock.cum_energy, "tokens": clock.cum_tokens,
                                     "rounds": len(rows), "bytes_up": total("bits_up") / 8,
                                     "bytes_down": total("bits_down") / 8,
                                     **{k: total(k) for k in ("t_draft", "t_uplink", "t_propagation", "t_verify",
                                                              "t_downlink", "e_draft", "e_uplink", "e_downlink",
                                                              "e_idle")},
                                     "prompts": per_prompt}
        return out


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[1]).read())
    worker = DeviceWorker(spec)
    print("@@" + json.dumps({"ready": True, "draft_profile": worker.draft_profile.to_dict()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        try:
            if cmd.get("model"):
                reply = worker.modelled()
            elif cmd.get("devices"):
                reply = worker.run_fleet(cmd["policy"], cmd["edge"], int(cmd["devices"]), cmd["metrics_at"])
            else:
                reply = worker.run_policy(cmd["policy"], cmd["edge"])
        except Exception as exc:  # reported to the orchestrator as one line (the traceback goes to stderr)
            traceback.print_exc()
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reply = {"error": f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})",
                     **({"policy": cmd["policy"]} if "policy" in cmd else {})}
        print("@@" + json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

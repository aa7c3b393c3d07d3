"""Run the testbed: the edge (``gelato serve``), the link (``gelato link``, one per policy, so its counters are
the policy's) and the device (:mod:`.device`) as separate processes pinned to disjoint cores, then assemble
measured and modelled figures per policy (:func:`assemble`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gelato.constants import E_BAR_J
from gelato.testbed.metrics import assemble
from gelato.testbed.presets import LinkPreset, power_profile, rapl_available

DEFAULT_POLICIES = ("edge-streaming", "edge-autoregressive", "static-3", "static-5", "static-7", "dssd", "gelato-paper",
                    "gelato-improved", "static-5-pipelined", "gelato-improved-pipelined")
CHAT_QUERIES = ("What is the capital of France?", "Give me three tips for staying focused while studying.",
                "Explain in two sentences why the sky is blue.", "Write a haiku about autumn rain.",
                "What are the main differences between a list and a tuple in Python?")
WORKLOADS = ("mixed", "chat", "gsm8k", "spec-bench")
FLEET_POLICIES = ("edge-streaming", "gelato-improved")


class TestbedError(RuntimeError):
    """A process of the testbed failed; the message is one line."""


@dataclass
class TestbedConfig:
    link: LinkPreset
    draft_dir: Path
    target_dir: Path | None  # None with an external edge
    policies: Sequence[str] = DEFAULT_POLICIES
    workload: str = "mixed"
    prompts: int = 3
    max_new_tokens: int = 48
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    e_bar: float = E_BAR_J
    power_profile: str = "snapdragon-8-gen-3-phone"
    edge: str | None = None  # HOST:PORT of an edge already running
    edge_cores: Sequence[int] = ()
    device_cores: Sequence[int] = ()
    devices: Sequence[int] = ()  # fleet runs: N devices at once on one edge, for each N here (none: skipped)
    fleet_policies: Sequence[str] = FLEET_POLICIES
    payload: str | None = None  # what drafting policies without their own payload send (None: the default, draws)
    draft_top_k: int | None = None  # compact payload: the top k of q sampled and sent (0: the whole q; None: 24)
    extra: dict = field(default_factory=dict)


def split_cores(available: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Disjoint (edge, device) cores: the first half for the edge, the rest for the device (1 + 1 on 2 cores)."""
    cores = sorted(available if available is not None else os.sched_getaffinity(0))
    if len(cores) < 2:
        raise TestbedError(f"the testbed pins edge and device to disjoint cores; this process may use {len(cores)}")
    half = len(cores) // 2
    return cores[:half], cores[half:]


def _pinned(cores: Sequence[int]) -> Callable[[], None]:
    """The child's set-up: its cores, and SIGINT back to the default (a testbed started in the background, e.g.
    by nohup, hands its children SIGINT ignored, and the link emulator reports its final stats on SIGINT)."""
    def setup() -> None:
        os.sched_setaffinity(0, set(cores))
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return setup


def _gelato(*args: str) -> list[str]:
    return [sys.executable, "-m", "gelato.cli.main", *args]


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else "no output"


def _wait_for(proc: subprocess.Popen, marker: str, what: str, timeout: float = 300.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise TestbedError(f"the {what} exited before it was ready (exit code {proc.wait()}): "
                               f"{_tail(proc.log)}")
        if line.startswith(marker):
            return line.strip()
    raise TestbedError(f"the {what} was not ready within {timeout:.0f} s")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> str:
    if proc is None or proc.poll() is not None:
        return proc.stdout.read() if proc is not None and proc.stdout else ""
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


class Processes:
    """The edge, device and per-policy link processes; stops them all on exit."""

    def __init__(self, cfg: TestbedConfig, spec_path: Path) -> None:
        self.cfg, self.spec_path = cfg, spec_path
        self.log_dir = spec_path.parent
        self.edge_proc = self.device_proc = None
        self.edge_address = cfg.edge

    def __enter__(self) -> Processes:
        cfg, threads = self.cfg, str(max(1, len(self.cfg.edge_cores)))
        if cfg.edge is None:
            self.edge_proc = self._spawn("edge", _gelato(
                "serve", "--port", "0", "--target", str(cfg.target_dir), "--tokenizer-dir", str(cfg.draft_dir),
                "--threads", threads, "--max-batch", str(max([1, *cfg.devices])), "--max-sessions",
                str(max([64, *cfg.devices])), "--max-sessions-per-device", str(max([16, *cfg.devices])), "--log-level", "warning"), cfg.edge_cores)
            line = _wait_for(self.edge_proc, "edge listening on", "edge (gelato serve)")
            self.edge_address = line.rsplit(" ", 1)[-1]
        self.device_proc = self._spawn("device", [sys.executable, "-m", "gelato.testbed.device",
                                                  str(self.spec_path)], cfg.device_cores, stdin=subprocess.PIPE)
        self.ready = self._reply()
        return self

    def _spawn(self, name: str, argv: list[str], cores: Sequence[int], **kw) -> subprocess.Popen:
        """A process pinned to ``cores``; stdout is read here, stderr goes to a log file (never a full pipe)."""
        log = self.log_dir / f"{name}.log"
        with log.open("a") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=_pinned(cores),
                                    **kw)
        proc.log = log
        return proc

    def _reply(self) -> dict:
        line = _wait_for(self.device_proc, "@@", "device process", timeout=1800)
        reply = json.loads(line[2:])
        if "error" in reply and "policy" not in reply:
            raise TestbedError(f"device: {reply['error']} (log: {_tail(self.device_proc.log)})")
        return reply

    def ask(self, command: dict) -> dict:
        self.device_proc.stdin.write(json.dumps(command) + "\n")
        self.device_proc.stdin.flush()
        return self._reply()

    def start_link(self, seed: int) -> subprocess.Popen:
        proc = self._spawn("link", _gelato("link", "--listen", "0", "--upstream", self.edge_address, "--json-stats",
                                           "--report-every", "86400", "--log-level", "warning", "--seed", str(seed),
                                           *self.cfg.link.link_args()), self.cfg.edge_cores)
        line = _wait_for(proc, "link listening on", "link emulator (gelato link)", timeout=120)
        proc.address = line.split()[3]
        return proc

    def __exit__(self, *exc) -> None:
        if self.device_proc is not None and self.device_proc.poll() is None:
            try:
                self.device_proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.device_proc.stdin.flush()
                self.device_proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.device_proc.kill()
        _stop(self.edge_proc)


def link_stats(output: str) -> dict:
    """The last JSON stats line a ``gelato link --json-stats`` printed (its final report)."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise TestbedError("the link emulator printed no final stats")


def run_testbed(cfg: TestbedConfig, prompts: list[dict], fingerprint: str, eos: int | None,
                on_event: Callable[[str, dict], None] = lambda kind, data: None) -> dict:
    """Run every policy of ``cfg`` over ``prompts`` (dicts with ``id`` and ``ids``); the testbed's JSON object."""
    profile = power_profile(cfg.power_profile)
    spec = {"draft_dir": str(cfg.draft_dir), "threads": max(1, len(cfg.device_cores)),
            "sampling": {"temperature": cfg.temperature, "top_k": cfg.top_k, "top_p": cfg.top_p},
            "channel": cfg.link.channel_config().model_dump(mode="json"), "prompts": prompts, "seed": cfg.seed,
            "max_new_tokens": cfg.max_new_tokens, "eos": eos, "fingerprint": fingerprint, "e_bar": cfg.e_bar,
            "power_profile": profile.name, "payload": cfg.payload,
            "draft_top_k": cfg.draft_top_k}
    started = time.perf_counter()
    raw: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        with Processes(cfg, spec_path) as procs:
            on_event("ready", {"edge": procs.edge_address, "startup_s": time.perf_counter() - started})
            for i, name in enumerate(cfg.policies):
                link = procs.start_link(cfg.seed)
                try:
                    measured = procs.ask({"policy": name, "edge": link.address})
                finally:
                    out = _stop(link, signal.SIGINT)
                measured["link"] = link_stats(out)
                raw[name] = measured
                on_event("policy", {"index": i, "total": len(cfg.policies), "name": name, "raw": measured})
            modelled = procs.ask({"model": True})
            fleet = run_fleets(cfg, procs, on_event)
    result = assemble(cfg, raw, modelled, profile)
    if fleet:
        result["fleet"] = fleet
    result.update(elapsed_s=time.perf_counter() - started, rapl=rapl_available(),
                  processes={"edge": {"address": procs.edge_address, "cores": list(cfg.edge_cores),
                                      "external": cfg.edge is not None},
                             "link": {"cores": list(cfg.edge_cores), "one process per policy": True},
                             "device": {"cores": list(cfg.device_cores), "threads": spec["threads"]}})
    return result


def run_fleets(cfg: TestbedConfig, procs: Processes, on_event: Callable[[str, dict], None]) -> dict:
    """For each N of ``cfg.devices`` and each fleet policy: N devices at once through one link (measured), then
    every policy modelled up to 64 devices from the batch-cost curve fitted to all those forwards."""
    from gelato.testbed.fleet import batch_cost_curve, fleet_figures, model_fleet

    if not cfg.devices:
        return {}
    measured: dict[str, dict[str, dict]] = {}
    samples: list = []
    for n in cfg.devices:
        for name in cfg.fleet_policies:
            link = procs.start_link(cfg.seed)
            try:
                raw = procs.ask({"policy": name, "edge": link.address, "devices": n, "metrics_at": procs.edge_address})
            finally:
                _stop(link, signal.SIGINT)
            if "error" in raw:
                raise TestbedError(f"fleet run {name} x {n}: {raw['error']}")
            samples.extend(raw["forward_samples"])
            measured.setdefault(name, {})[str(n)] = fleet_figures(raw)
            on_event("fleet", {"name": name, "devices": n, "figures": measured[name][str(n)]})
    curve = batch_cost_curve(samples)
    modelled = {name: model_fleet(by_n[str(min(cfg.devices))], curve) for name, by_n in measured.items()}
    return {"policies": list(cfg.fleet_policies), "devices": list(cfg.devices), "measured": measured,
            "batch_cost_curve": curve, "modelled": modelled,
            "note": "measured: N device sessions at once (threads of one device process on its pinned core, so their "
                    "drafting shares that core), one link emulator, one edge batching up to N; modelled: each device "
                    "its own processor, time per token at N = 1 with the edge forward replaced by the fitted "
                    "batch-cost curve at N x the tokens a forward carried at N = 1"}


def workload_prompts(tokenizer, workload: str, n: int) -> list[dict]:
    """``n`` prompts of a workload as ids (a chat turn where the tokenizer has a template, else the fast pair's
    ``Question: ...\\nAnswer:`` format). ``mixed`` takes chat, GSM8K and Spec-Bench in turn. GSM8K questions
    come from the end of the test split; Spec-Bench takes one question per category in file order."""
    from gelato.data.workloads import load_gsm8k, load_spec_bench
    from gelato.models.chat import demo_prompt_ids

    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose one of {', '.join(WORKLOADS)}")
    if n < 1:
        raise ValueError(f"--prompts must be >= 1, got {n}")
    sources = {"chat": lambda: [(f"chat-{i}", q) for i, q in enumerate(CHAT_QUERIES)],
               "gsm8k": lambda: [(p.id, p.text) for p in load_gsm8k("test")[::-1][:n]],
               "spec-bench": lambda: [(p.id, p.text) for p in load_spec_bench(limit=1)]}
    kinds = ("chat", "gsm8k", "spec-bench") if workload == "mixed" else (workload,)
    pools = {k: sources[k]() for k in kinds}
    chosen = []
    for i in range(n):
        pool = pools[kinds[i % len(kinds)]]
        chosen.append(pool[(i // len(kinds)) % len(pool)])
    return [{"id": pid, "ids": demo_prompt_ids(tokenizer, text)} for pid, text in chosen]

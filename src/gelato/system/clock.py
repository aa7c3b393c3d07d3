"""The modelled clock: charges each round's time and device energy from the system model.

Implements the round loop's ``RoundClock`` protocol (``gelato.generation.loop``):

* ``begin_prompt()`` starts a prompt (once per ``generate``): the draft's cache lacks one committed token
  again, and the edge has seen every token (:func:`~gelato.system.compute.next_pending`);
* ``begin_round(ctx)`` draws this round's channel (fading) and returns the :class:`ChannelState` the
  policy sees as ``ctx.link``;
* ``charge(record, draft, verdict)`` computes the round's terms (docs/design-decisions.md: "The round and the system model", "Metrics")

      t_draft    = draft compute of every computed draft token (sent or not)
      t_uplink   = bits_up / r_up          (bits of the real DraftUp message + header)
      t_verify   = T_V or the target's compute model
      t_downlink = bits_down / r_down      (bits of the real VerdictDown message + header)
      t_prop     = 2 * delay_s             (propagation both ways; 0 unless the channel sets delay_s)
      t_round    = t_draft + t_uplink + t_prop + t_verify + t_downlink
      e_round    = e_draft + e_uplink + e_downlink + e_idle   (device; e_edge reported apart)

  as a :class:`RoundCharge` and advances the modelled time and energy; with pipelined drafting
  (``charge(..., predrafted=m)``) the tokens drafted ahead during the wait are billed in full and their
  time overlaps the wait (:func:`overlap_timeline`, a :class:`Timeline`);
* a burst's record (``record.streamed`` > 0: the edge streamed its own tokens) is charged by
  :meth:`ModelledClock.burst_terms`: one request up, propagation once, n edge steps, n messages down;
* ``predict_terms(g, link, context_len, bits_per_token)`` gives the predicted :class:`RoundCharge` of a
  budget ``g`` with the same formulas, ``predict(...)`` its (round time, device energy) (GELATO's outer loop);
  ``predict_burst(n, link, context_len)`` a burst's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from gelato.decoding.payload_modes import PayloadMode
from gelato.decoding.types import CHARGE_KEYS, Draft, RoundCharge, RoundCommit, RoundRecord, Verdict
from gelato.system.channel import Channel, ChannelConfig, ChannelState, make_channel
from gelato.system.compute import (
    QWEN25_0_5B,
    ComputeModel,
    ConstantCompute,
    FlopsCompute,
    draft_seconds,
    next_pending,
    verify_seconds,
)
from gelato.system.energy import DevicePower, EdgePower, device_round_energy, edge_round_energy
from gelato.system.presets import PAPER
from gelato.wire.payload import PayloadConfig, build_draft_up, build_verdict_down, message_bits

Accounting = Literal["paper", "sequential"]

__all__ = ["CHARGE_KEYS", "ModelledClock", "Timeline", "overlap_timeline"]


class ModelledClock:
    """Modelled time and energy per round; deterministic for a seed.

    ``accounting``: ``"paper"`` bills ``g`` single-token draft forwards at contexts ``L..L+g-1`` (the
    paper's formula); ``"sequential"`` follows the real proposer, whose first forward also feeds the
    committed tokens its cache lacks (2 after a fully accepted round). ``count_downlink_time`` adds the
    downlink time to the round time (the paper neglects it; for an id-only verdict it is microseconds).
    """

    def __init__(self, channel: Channel | ChannelConfig | None = None, draft_compute: ComputeModel | None = None,
                 verify_compute: ComputeModel | None = None, device_power: DevicePower | None = None,
                 edge_power: EdgePower | None = None, payload: PayloadConfig | None = None, seed: int = 0,
                 accounting: Accounting = "sequential", count_downlink_time: bool = True,
                 name: str = "modelled") -> None:
        if accounting not in ("paper", "sequential"):
            raise ValueError(f"accounting must be 'paper' or 'sequential', got {accounting!r}")
        if channel is None or isinstance(channel, ChannelConfig):
            channel = make_channel(channel, seed)
        self.channel = channel
        self.draft_compute = draft_compute or FlopsCompute(QWEN25_0_5B, PAPER.flops_per_s)
        self.verify_compute = verify_compute or ConstantCompute(PAPER.t_verify_s)
        self.device_power = device_power or DevicePower()
        self.edge_power = edge_power or EdgePower()
        self.payload = payload or PayloadConfig()
        self.seed = seed
        self.accounting: Accounting = accounting
        self.count_downlink_time = count_downlink_time
        self.name = name
        self.reset(seed)

    # --- state ----------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Restart time, energy, the channel's random stream and the per-round log."""
        if seed is not None:
            self.seed = seed
        self.channel.reset(self.seed)
        self.records: list[RoundRecord] = []  # every charged round, with its charge
        self.cum_tokens = 0
        self.cum_time = 0.0
        self.cum_energy = 0.0
        self.cum_bits_up = 0
        self.cum_bits_down = 0
        self._state: ChannelState | None = None
        self.begin_prompt()

    @property
    def link(self) -> ChannelState | None:
        """This round's channel state (after ``begin_round``, before ``charge``)."""
        return self._state

    @property
    def mean_bits_down(self) -> float | None:
        return self.cum_bits_down / len(self.records) if self.records else None

    @property
    def rows(self) -> list[dict]:
        """The charged rounds as log lines (``RoundRecord.as_row``)."""
        return [r.as_row() for r in self.records]

    # --- RoundClock -----------------------------------------------------------------------------------

    def begin_prompt(self) -> None:
        """A new prompt starts (its prefill is not billed per round): the draft cache lacks one token."""
        self._pending = 1  # committed tokens the draft cache lacks at the next round
        self._pending_ids: list[int] = []  # tokens the edge has not seen (DSSD residual samples)

    def begin_round(self, ctx: Any = None) -> ChannelState:
        self._state = self.channel.next_state()
        return self._state

    def charge(self, record: RoundRecord, draft: Draft, verdict: Verdict, predrafted: int = 0) -> RoundCharge:
        """Bill a round. Pipelined drafting: ``draft.n_carried`` of its tokens were pre-drafted (and billed)
        in the previous round; ``predrafted`` tokens were drafted ahead during this round's wait (energy in
        full, time overlapped with uplink, verification and downlink: :func:`overlap_timeline`)."""
        state = self._state if self._state is not None else self.channel.next_state()
        self._state = None
        if record.streamed:  # a burst: the draft's cache lacks every streamed token too
            terms = self.burst_terms(record.streamed, state, record.start, record.index, list(record.tokens))
            charge = self._book(record, replace(terms, n_pending=self._pending), record.streamed, state)
            self._pending, self._pending_ids = self._pending + record.streamed, []
            return charge
        n_sent, n_computed, L = len(draft.tokens), draft.n_computed, draft.start
        n_pending = 0 if self.accounting == "paper" else self._pending
        n_carried = min(draft.n_carried, n_computed)
        t_draft = draft_seconds(self.draft_compute, n_computed - n_carried, L + n_carried,
                                n_pending if n_carried == 0 else (0 if self.accounting == "paper" else 1))
        t_predraft = draft_seconds(self.draft_compute, predrafted, L + n_sent, 0 if self.accounting == "paper" else 1)
        bits_up = 0 if self.payload.mode is PayloadMode.EDGE_AR else message_bits(
            build_draft_up(draft, self.payload, record.index, self._pending_ids), self.payload.header_bits_up)
        position = L + verdict.accepted + 1
        bits_down = message_bits(build_verdict_down(verdict, self.payload, record.index, position, n_sent),
                                 self.payload.header_bits_down)
        t_verify = verify_seconds(self.verify_compute, n_sent, L)
        terms = self._terms(state, t_draft, bits_up, t_verify, bits_down, t_predraft)
        terms = replace(terms, n_pending=n_pending, context_len=L)
        charge = self._book(record, terms, verdict.accepted + 1, state)
        self._pending = next_pending(self._pending, n_computed, verdict.accepted)
        self._pending_ids = RoundCommit.of(draft.tokens, verdict).pending
        return charge

    def _book(self, record: RoundRecord, terms: RoundCharge, tokens: int, state: ChannelState) -> RoundCharge:
        """Check a round's terms, add them to the running totals and the log; the charge with its totals."""
        bad = {k: v for k, v in (("e_draft", terms.e_draft), ("e_uplink", terms.e_uplink),
                                 ("e_downlink", terms.e_downlink), ("e_idle", terms.e_idle),
                                 ("e_edge", terms.e_edge)) if not v >= 0}
        if bad:
            raise ValueError(f"energy terms must be >= 0 J, got {bad}")
        self.cum_tokens += tokens
        self.cum_time += terms.t_round
        self.cum_energy += terms.e_round
        self.cum_bits_up += terms.bits_up
        self.cum_bits_down += terms.bits_down
        charge = replace(terms, cum_tokens=self.cum_tokens, cum_time=self.cum_time, cum_energy=self.cum_energy,
                         channel_index=state.index, fading=state.fading)
        self.records.append(replace(record, charge=charge))
        return charge

    def burst_terms(self, n: int, link: ChannelState | None, context_len: int, round_index: int = 0,
                    tokens: list[int] | None = None) -> RoundCharge:
        """The charge of a burst of ``n`` tokens the edge streams after ``context_len`` committed tokens (no
        running totals; ``link=None``: the channel's mean state). Charged by :meth:`charge` for a burst's
        record (which also moves the draft cache's lack by ``n``) and the prediction of one (GELATO).

        One request up (the real DraftUp with ``stream_tokens``), the propagation both ways once, ``n`` edge
        steps (a zero-draft verify each, at contexts ``L .. L+n-1``) and ``n`` messages down (the real
        streamed VerdictDowns; ``tokens``: their ids, else the largest id). Each message goes down while the
        edge computes the next step, so the round ends when the last message has arrived::

            done_i = done_{i-1} + t_step_i;   sent_i = max(done_i, sent_{i-1}) + t_down_i
            t_round = t_uplink + t_propagation + sent_n      (+ done_n instead without downlink time)

        The device drafts nothing: it pays the request's transmission, receiving the n messages and waiting
        (idle power during the edge's steps), as every round bills those terms."""
        if n < 1:
            raise ValueError(f"a burst streams at least one token, got n = {n}")
        link = self.channel.mean_state() if link is None else link
        if not (link.uplink_bps > 0 and link.downlink_bps > 0):
            raise ValueError(f"channel rate is zero in round {link.index} (gain {link.gain}); cannot send")
        up = build_draft_up(Draft.empty(context_len), self.payload, round_index, self._pending_ids)
        up.stream_tokens = n
        bits_up = message_bits(up, self.payload.header_bits_up)
        ids = list(tokens or [])[:n]
        ids += [ids[-1] if ids else self.payload.max_id] * (n - len(ids))
        steps, downs, bits_down, done, sent = [], [], 0, 0.0, 0.0
        for i, token in enumerate(ids):
            msg = build_verdict_down(Verdict(accepted=0, token=token), self.payload, round_index, context_len + i + 1)
            msg.streamed, msg.last = True, i == n - 1
            t_step = verify_seconds(self.verify_compute, 0, context_len + i)
            bits = message_bits(msg, self.payload.header_bits_down)
            bits_down += bits
            t_down = bits / link.downlink_bps
            steps.append(t_step)
            downs.append(t_down)
            done += t_step
            sent = max(done, sent) + t_down
        cfg = self.channel.config
        t_uplink, t_prop, t_verify, t_downlink = bits_up / link.uplink_bps, 2.0 * cfg.delay_s, sum(steps), sum(downs)
        t_round = t_uplink + t_prop + (sent if self.count_downlink_time else done)
        e = device_round_energy(self.device_power, cfg.uplink_power_w, 0.0, t_uplink, t_downlink, t_verify)
        return RoundCharge(t_uplink=t_uplink, t_propagation=t_prop, t_verify=t_verify, t_downlink=t_downlink,
                           t_round=t_round, e_uplink=e.uplink, e_downlink=e.downlink, e_idle=e.idle, e_round=e.total,
                           e_edge=edge_round_energy(self.edge_power, cfg.downlink_power_w, t_verify, t_downlink),
                           bits_up=bits_up, bits_down=bits_down, gain=link.gain,
                           snr_db=link.snr_db, rate_up_bps=link.uplink_bps, rate_down_bps=link.downlink_bps,
                           context_len=context_len)

    # --- prediction -----------------------------------------------------------------------------------

    def predict_terms(self, g: int, link: ChannelState | None, context_len: int, bits_per_token: float,
                      bits_down: float | None = None) -> RoundCharge:
        """The predicted charge of drafting and sending ``g`` tokens this round (``link=None``: the channel's
        mean state); its running totals (``cum_*``) are 0."""
        if link is None:
            link = self.channel.mean_state()
        if g < 0:
            raise ValueError(f"draft budget g must be >= 0, got {g}")
        if bits_per_token < 0:
            raise ValueError(f"bits per token must be >= 0, got {bits_per_token}")
        n_pending = 0 if self.accounting == "paper" else self._pending
        t_draft = draft_seconds(self.draft_compute, g, context_len, n_pending)
        if bits_down is None:
            bits_down = self.mean_bits_down
        if bits_down is None:
            bits_down = message_bits(build_verdict_down(Verdict(accepted=g, token=self.payload.max_id), self.payload,
                                                        len(self.records), context_len + g + 1, g),
                                     self.payload.header_bits_down)
        t_verify = verify_seconds(self.verify_compute, g, context_len)
        return replace(self._terms(link, t_draft, g * bits_per_token, t_verify, bits_down), context_len=context_len,
                       n_pending=n_pending)

    def predict(self, g: int, link: ChannelState | None, context_len: int, bits_per_token: float,
                bits_down: float | None = None) -> tuple[float, float]:
        """Predicted (round time s, device energy J) for a budget ``g`` with every token sent.

        ``bits_per_token``: predicted uplink bits per draft token (e.g. a policy's running mean);
        ``bits_down``: predicted downlink bits (default: the running mean, or an id-only verdict).
        """
        terms = self.predict_terms(g, link, context_len, bits_per_token, bits_down)
        return terms.t_round, terms.e_round

    def predict_burst(self, n: int, link: ChannelState | None, context_len: int) -> tuple[float, float]:
        """Predicted (round time s, device energy J) of a burst of ``n`` tokens (:meth:`burst_terms`)."""
        terms = self.burst_terms(n, link, context_len)
        return terms.t_round, terms.e_round

    def _terms(self, state: ChannelState, t_draft: float, bits_up: float, t_verify: float,
               bits_down: float, t_predraft: float = 0.0) -> RoundCharge:
        """The round's terms from its phase times and bits over ``state`` (no running totals yet)."""
        if not (state.uplink_bps > 0 and state.downlink_bps > 0):
            raise ValueError(f"channel rate is zero in round {state.index} (gain {state.gain}); cannot send")
        t_uplink = bits_up / state.uplink_bps
        t_downlink = bits_down / state.downlink_bps
        cfg = self.channel.config
        t_prop = 2.0 * cfg.delay_s
        timeline = overlap_timeline(t_draft, t_uplink, t_verify, t_downlink, t_predraft, self.count_downlink_time,
                                    t_prop)
        e = device_round_energy(self.device_power, cfg.uplink_power_w, t_draft + t_predraft, t_uplink, t_downlink,
                                timeline.t_idle)
        return RoundCharge(t_draft=t_draft, t_uplink=t_uplink, t_propagation=t_prop, t_verify=t_verify,
                           t_downlink=t_downlink, t_round=timeline.t_round, e_draft=e.draft, e_uplink=e.uplink,
                           e_downlink=e.downlink, e_idle=e.idle, e_round=e.total,
                           e_edge=edge_round_energy(self.edge_power, cfg.downlink_power_w, t_verify, t_downlink),
                           t_predraft=t_predraft, t_predraft_exposed=timeline.t_exposed,
                           e_predraft=self.device_power.compute_w * t_predraft, bits_up=bits_up, bits_down=bits_down,
                           gain=state.gain, snr_db=state.snr_db, rate_up_bps=state.uplink_bps,
                           rate_down_bps=state.downlink_bps)

    # --- logs -----------------------------------------------------------------------------------------

    def rounds_jsonl(self, path: str | Path) -> Path:
        """Write one JSON line per charged round: the RoundRecord fields and every charge term."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for row in self.rows:
                fh.write(json.dumps(row, sort_keys=True) + "\n")
        return path

    def describe(self) -> dict:
        """The clock's configuration, for experiment logs."""
        return {"name": self.name, "seed": self.seed, "accounting": self.accounting,
                "count_downlink_time": self.count_downlink_time, "channel": self.channel.config.model_dump(mode="json"),
                "draft_compute": repr(self.draft_compute), "verify_compute": repr(self.verify_compute),
                "device_power": self.device_power.model_dump(), "edge_power": self.edge_power.model_dump(),
                "payload": self.payload.model_dump()}


@dataclass(frozen=True)
class Timeline:
    """One round's timeline, seconds (:func:`overlap_timeline`)."""

    t_round: float  # the round's length
    t_wait: float  # from the end of drafting to the verdict's arrival
    t_exposed: float  # pre-draft time beyond the wait, which the round pays for
    t_idle: float  # time of the verification window the device spends idle (billed at idle power)


def overlap_timeline(t_draft: float, t_uplink: float, t_verify: float, t_downlink: float, t_predraft: float = 0.0,
                     count_downlink_time: bool = True, t_propagation: float = 0.0) -> Timeline:
    """One round's timeline when the device drafts ahead during the wait (pipelined drafting).

    The device drafts for ``t_draft`` (what still must be drafted), sends, and then waits
    ``t_uplink + t_propagation + t_verify (+ t_downlink)`` for the verdict (``t_propagation``: both
    directions' propagation delay, counted before verification for the overlap); pre-drafting starts as the uplink starts and
    runs ``t_predraft`` on the device, concurrently. The round ends when both the verdict is back and the
    pre-draft is done, so pre-draft time beyond the wait is not hidden::

        t_round   = t_draft + max(t_wait, t_predraft)
        t_exposed = max(0, t_predraft - t_wait)       (pre-draft time the round pays for)
        t_idle    = t_verify - overlap of [t_uplink, t_uplink + t_verify] with [0, t_predraft]

    With ``t_predraft = 0`` this is the sequential round, ``t_draft + t_uplink + t_verify + t_downlink``.
    """
    if min(t_draft, t_uplink, t_verify, t_downlink, t_predraft, t_propagation) < 0:
        raise ValueError("phase times must be >= 0")
    t_wait = t_uplink + t_propagation + t_verify + (t_downlink if count_downlink_time else 0.0)
    busy_in_verify = min(max(0.0, t_predraft - t_uplink - t_propagation / 2), t_verify)
    return Timeline(t_round=t_draft + max(t_wait, t_predraft), t_wait=t_wait, t_exposed=max(0.0, t_predraft - t_wait),
                    t_idle=t_verify - busy_in_verify)


"""The one vocabulary of payload modes: what crosses the uplink each round, and so which verification rule applies.

Everything else derives from :class:`PayloadMode`: the verification rules of :mod:`gelato.decoding.rejection`,
``gelato.wire.payload`` (which re-exports it and builds the messages), the transport codec, the API schema,
the CLI options' choices and help, and ``PolicySpec.payload_mode``.
"""

from __future__ import annotations

import enum


class PayloadMode(enum.StrEnum):
    """How a round is put on the wire (docs/design-decisions.md, "Payload and losslessness")."""

    COMPACT = "compact"
    """Ids only (greedy) or ids plus the exact truncated q each token was sampled from; rule: speculative sampling."""

    PAPER_TOPP = "paper_topp"
    """Ids plus the bit-packed top-p part of each q (the paper's); rule: tokens outside it rejected, residual p - q_S."""

    DSSD = "dssd"
    """Ids plus q(x) per token; rule: accept on q(x), at a rejection the dense p goes down and the device samples."""

    DRAWS = "draws"
    """Ids plus the integer q(x) (q rounded to 2^24, sampled from exactly); rule: accept on q(x), at a rejection M
    draws y ~ p with p(y) go down and the device accepts one with probability max(0, 1 - q(y)/p(y))."""

    EDGE_AR = "edge_ar"
    """No draft: the edge-only baseline (prompt up once, one target token down per round); no verification rule."""

    @property
    def listens_downlink(self) -> bool:
        """True where the paper bills the device's receive power (DSSD's target rows, edge-only's tokens)."""
        return self in (PayloadMode.DSSD, PayloadMode.DRAWS, PayloadMode.EDGE_AR)

    @property
    def quantized_q(self) -> bool:
        """The device drafts from its whole q rounded to integers summing to 2^Q_BITS (and nothing else)."""
        return self is PayloadMode.DRAWS


DEFAULT_PAYLOAD = PayloadMode.DRAWS
"""The payload of ``generate``, ``device``, the API, the testbed and the modelled clock unless one is chosen: under
sampling a few bytes a drafted token and the whole q's acceptance (docs/results/sampling-payload.md); under greedy
decoding ids only, as ``compact``."""

PAYLOAD_CHOICES: tuple[str, ...] = tuple(m.value for m in PayloadMode if m is not PayloadMode.EDGE_AR)
"""The modes a drafting run may choose (each is a verification rule); ``edge_ar`` belongs to the edge-only policy."""


def payload_mode(value: str, choices: tuple[str, ...] = PAYLOAD_CHOICES) -> PayloadMode:
    """``value`` as a :class:`PayloadMode`; ValueError with one line naming ``choices`` when it is not one."""
    if value not in choices:
        raise ValueError(f"unknown payload {value!r}; choose {', '.join(choices[:-1])} or {choices[-1]}"
                         if len(choices) > 1 else f"unknown payload {value!r}; choose {choices[0]}")
    return PayloadMode(value)


def choices_help(choices: tuple[str, ...] = PAYLOAD_CHOICES) -> str:
    """``compact | paper_topp | dssd``: the choices as an option's help text spells them."""
    return " | ".join(choices)

"""One payload vocabulary: every place that names payload modes derives them from decoding/payload_modes.py."""

from __future__ import annotations

import typing

import pytest
import torch

from gelato.api.schemas import PayloadName
from gelato.decoding.payload_modes import PAYLOAD_CHOICES, PayloadMode, choices_help, payload_mode
from gelato.decoding.rejection import verify_rows
from gelato.decoding.sampling import SamplingParams
from gelato.policies.registry import POLICIES
from gelato.wire import payload as wire_payload
from gelato.wire.codec import payload_config


def test_the_drafting_choices_are_the_enum_less_the_edge_only_mode():
    assert PAYLOAD_CHOICES == ("compact", "paper_topp", "dssd", "draws")
    assert set(PAYLOAD_CHOICES) | {"edge_ar"} == {m.value for m in PayloadMode}
    assert choices_help() == "compact | paper_topp | dssd | draws"


def test_wire_and_api_use_the_one_enum():
    assert wire_payload.PayloadMode is PayloadMode
    assert typing.get_args(PayloadName) == PAYLOAD_CHOICES


def test_policy_specs_carry_enum_members():
    modes = {name: spec.payload_mode for name, spec in POLICIES.items() if spec.payload_mode is not None}
    assert modes == {"dssd": PayloadMode.DSSD, "edge-autoregressive": PayloadMode.EDGE_AR,
                     "edge-streaming": PayloadMode.EDGE_AR}
    assert all(type(m) is PayloadMode for m in modes.values())


def test_payload_mode_parses_and_refuses_with_one_line():
    assert payload_mode("dssd") is PayloadMode.DSSD
    with pytest.raises(ValueError) as exc:
        payload_mode("jpeg")
    assert str(exc.value) == "unknown payload 'jpeg'; choose compact, paper_topp, dssd or draws"
    with pytest.raises(ValueError, match="choose compact or paper_topp$"):
        payload_mode("dssd", ("compact", "paper_topp"))
    with pytest.raises(ValueError):
        payload_mode("edge_ar")  # the edge-only policy's own mode is not a drafting choice


def test_rules_and_codec_refuse_what_the_enum_does_not_name():
    logits = torch.zeros(2, 4)
    for rule in PAYLOAD_CHOICES:
        assert verify_rows(logits, [1], None, SamplingParams(), rule=rule).accepted in (0, 1)
    with pytest.raises(ValueError, match="unknown verification rule 'jpeg'"):
        verify_rows(logits, [1], None, SamplingParams(), rule="jpeg")
    assert payload_config(PayloadMode.PAPER_TOPP, SamplingParams()).mode is PayloadMode.PAPER_TOPP
    with pytest.raises(ValueError, match="unknown payload mode 'edge_ar'"):
        payload_config("edge_ar", SamplingParams())

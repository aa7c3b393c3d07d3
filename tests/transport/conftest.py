"""Fixtures of the transport tests: real gRPC servers on loopback (OS-picked ports), tiny random models."""

from __future__ import annotations

import gc

import pytest
import torch
from edge_helpers import make_pair


@pytest.fixture(scope="module")
def pair():
    torch.set_num_threads(1)
    return make_pair()


@pytest.fixture()
def no_leaks():
    yield
    gc.collect()

"""Fixtures of the device tests: one real edge server on loopback per module, serving the tiny pair's target."""

from __future__ import annotations

import pytest
from edge_helpers import start_edge


@pytest.fixture(scope="module")
def edge(pair):
    server = start_edge(pair[0], max_batch=4)
    yield server
    server.stop()

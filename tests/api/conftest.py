"""Fixtures of the API tests."""

from __future__ import annotations

import pytest
from api_helpers import load_test_pair


@pytest.fixture(scope="session")
def pair():
    """(draft, target, tokenizer) loaded once for every API test module."""
    return load_test_pair()

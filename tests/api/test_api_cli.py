"""``gelato api`` refuses bad flags with one ``error:`` line, before loading any model."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gelato.cli.main import app


@pytest.mark.parametrize("args,message", [
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--payload", "jpeg"], "unknown payload 'jpeg'"),
    (["--system", "moon"], "unknown system model 'moon'"),
    (["--e-bar", "-1"], "--e-bar must be > 0"),
])
def test_bad_flags(args, message):
    result = CliRunner().invoke(app, ["api", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_registered_with_help():
    result = CliRunner().invoke(app, ["api", "--help"])
    assert result.exit_code == 0 and "/v1/chat/completions" in result.output

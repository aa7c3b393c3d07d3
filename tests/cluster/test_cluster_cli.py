"""`gelato cluster` errors are one line: Ray missing (names the extra), a port in use, no cluster up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # runs gelato cluster in subprocesses (Ray)

EXTRA = "pip install -e '.[cluster]'"


def _gelato(args: list[str], tmp_path, block_ray: bool = False) -> subprocess.CompletedProcess:
    prelude = "sys.modules['ray'] = None; " if block_ray else ""  # as if Ray were not installed
    code = "import sys; " + prelude + "from gelato.cli.main import app; app(sys.argv[1:], prog_name='gelato')"
    env = {**os.environ, "GELATO_HOME": str(tmp_path), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["cluster", "up", "--replicas", "2"], ["cluster", "status", "--json"]])
def test_ray_not_installed_is_one_line_naming_the_extra(tmp_path, command):
    line = _error_line(_gelato(command, tmp_path, block_ray=True))
    assert "Ray Serve is not installed" in line and EXTRA in line


def test_port_in_use_is_one_line(tmp_path):
    pytest.importorskip("ray.serve", reason=f"Ray Serve is not installed: {EXTRA}")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _error_line(_gelato(["cluster", "up", "--port", str(port)], tmp_path))
    assert f"--port {port} is in use (pick another with --port)" in line


def test_status_without_a_cluster_is_one_line(tmp_path):
    pytest.importorskip("ray.serve", reason=f"Ray Serve is not installed: {EXTRA}")
    assert "no gelato cluster named 'default' is up" in _error_line(_gelato(["cluster", "status"], tmp_path))
    down = _gelato(["cluster", "down"], tmp_path)
    assert down.returncode == 0 and "no gelato cluster named 'default' was up" in down.stdout

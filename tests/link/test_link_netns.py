"""scripts/netns_link.sh: two network namespaces joined by a TBF-shaped veth pair (root only)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "netns_link.sh"
PREFIX = f"gx{os.getpid() % 100000}"


def _netns_unavailable() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces and tc need CAP_NET_ADMIN)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 ('ip' and 'tc') is not installed"
    probe = f"{PREFIX}-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"'ip netns add' is not permitted here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


_REASON = _netns_unavailable()
pytestmark = [pytest.mark.skipif(_REASON is not None, reason=f"netns link test skipped: {_REASON}"),
              pytest.mark.slow]  # starts an edge server and processes in network namespaces

SINK = """
import socket, sys
s = socket.socket(); s.bind(("10.77.9.2", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.sendall(str(n).encode()); c.close()
"""

SOURCE = """
import socket, sys
c = socket.create_connection(("10.77.9.2", int(sys.argv[1])), timeout=60)
c.sendall(b"x" * int(sys.argv[2])); c.shutdown(socket.SHUT_WR); n = int(c.recv(100))
print(n)
"""


def _tbf_stats(role: str, dev: str) -> dict:
    """The token bucket on ``dev``: its rate, bytes sent and overlimits (packets it had to hold back)."""
    out = _sh("exec", role, "--prefix", PREFIX, "--", "tc", "-s", "qdisc", "show", "dev", dev).stdout
    head = re.search(r"qdisc tbf \S+ root .*?rate (\S+)", out)
    sent = re.search(r"Sent (\d+) bytes \d+ pkt \(dropped \d+, overlimits (\d+)", out)
    assert head and sent, out
    return {"rate": head.group(1), "sent": int(sent.group(1)), "overlimits": int(sent.group(2))}


def _sh(*args, **kw):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30, **kw)


def test_tbf_shapes_the_uplink():
    up = _sh("up", "--prefix", PREFIX, "--uplink", "1mbit", "--downlink", "50mbit", "--subnet", "10.77.9")
    assert up.returncode == 0, up.stderr
    try:
        sink = subprocess.Popen(["bash", str(SCRIPT), "exec", "edge", "--prefix", PREFIX, "--",
                                 sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
        port = sink.stdout.readline().strip()
        nbytes = 125_000  # 1 Mbit: ~1 s at 1 mbit/s, far beyond the 16 kb bucket
        before = _tbf_stats("dev", f"{PREFIX}-d")
        src = _sh("exec", "dev", "--prefix", PREFIX, "--", sys.executable, "-c", SOURCE, port, str(nbytes))
        assert src.returncode == 0, src.stderr
        sink.wait(10)  # a hang guard
        assert int(src.stdout) == nbytes
        after = _tbf_stats("dev", f"{PREFIX}-d")
        # the uplink's token bucket carried the bytes at 1 Mbit/s and had to hold packets back (unshaped: none)
        assert after["rate"] == "1Mbit" and after["sent"] - before["sent"] >= nbytes
        assert after["overlimits"] > before["overlimits"]
    finally:
        down = _sh("down", "--prefix", PREFIX)
        assert down.returncode == 0
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(PREFIX) == 0


def test_script_refuses_unknown_options():
    r = _sh("up", "--prefix", PREFIX, "--bogus", "1")
    assert r.returncode == 2 and "unknown option" in r.stderr

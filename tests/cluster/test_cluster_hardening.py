"""`gelato cluster` is as safe as one edge (issue 28, items 1-3): one real cluster, started by the CLI.

One module-scoped cluster (`gelato cluster up --name t28`: its background head process, its own Ray, 1
replica of the fast pair's target, bearer tokens); `gelato cluster down --name t28` at the end. The checks
that need no cluster (ports refused by name before Ray starts) run first, without it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[cluster]'")

import grpc  # noqa: E402
import psutil  # noqa: E402

from gelato.device.edge_client import EdgeClient  # noqa: E402
from gelato.wire.proto import gelato_pb2 as pb  # noqa: E402

pytestmark = pytest.mark.slow
NAME = "t28"
TOKEN = "cluster-hardening-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gelato(args: list[str], home, timeout: float = 120) -> subprocess.CompletedProcess:
    code = "import sys; from gelato.cli.main import app; app(sys.argv[1:], prog_name='gelato')"
    env = {**os.environ, "GELATO_HOME": str(home), "COLUMNS": "200", "GELATO_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ------------------------------------------------------------------------ before Ray starts (no cluster)

def test_a_port_shared_with_the_haproxy_exporter_is_named(tmp_path, fast_pair):
    """`--metrics-port 9101` was an opaque Ray actor error (the HAProxy exporter's default port)."""
    line = _error_line(_gelato(["cluster", "up", "--target", fast_pair[1], "--metrics-port", 9101], tmp_path))
    assert "--exporter-port 9101 is also --metrics-port" in line


@pytest.mark.parametrize("flag", ["--stats-port", "--exporter-port", "--fallback-port"])
def test_a_busy_fixed_port_is_named(tmp_path, fast_pair, flag):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _error_line(_gelato(["cluster", "up", "--target", fast_pair[1], "--port", _free_port(), flag, port],
                                   tmp_path))
    assert f"{flag} {port} is in use" in line


def test_a_host_that_is_not_here_is_named(tmp_path, fast_pair):
    line = _error_line(_gelato(["cluster", "up", "--target", fast_pair[1], "--host", "192.0.2.1"], tmp_path))
    assert "--host 192.0.2.1" in line


# ------------------------------------------------------------------------ one cluster, started by the CLI

@pytest.fixture(scope="module")
def cluster(tmp_path_factory, fast_pair):
    home = tmp_path_factory.mktemp("gelato-home")
    tokens = home / "tokens"
    tokens.write_text(f"tester:{TOKEN}\n")
    ports = {flag: _free_port() for flag in ("--port", "--metrics-port", "--stats-port", "--exporter-port",
                                              "--fallback-port", "--fallback-http-port")}
    args = ["cluster", "up", "--name", NAME, "--replicas", 1, "--num-cpus", 2, "--target", fast_pair[1],
            "--tokens-file", tokens, "--timeout-s", 240, *[x for kv in ports.items() for x in kv]]
    try:
        up = _gelato(args, home, timeout=400)
        assert up.returncode == 0, (up.stdout, up.stderr)
        yield {"home": home, "ports": ports, "up": up.stdout}
    finally:
        state = json.loads((home / "clusters" / f"{NAME}.json").read_text())
        down = _gelato(["cluster", "down", "--name", NAME], home)
        assert down.returncode == 0, down.stderr
        assert state["private_dir"] and not os.path.exists(state["private_dir"])  # `down` removes it


def _listeners(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_oversized_message_is_refused_before_a_replica_parses_it(cluster, fast_pair):
    """A 3M-id open (~9 MB) through the ingress is RESOURCE_EXHAUSTED, as on one edge (4 MB), not parsed by a
    replica (which would answer INVALID_ARGUMENT for the prompt's length after holding it)."""
    big = pb.StreamUp(open=pb.OpenRequest(prompt_ids=[100_000] * 3_000_000, tokenizer_fingerprint="x",
                                          max_new_tokens=8)).SerializeToString()
    assert len(big) > 4 * 1024 * 1024
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{cluster['ports']['--port']}", options=options) as channel:
        call = channel.stream_stream("/gelato.v1.Edge/Generate")
        with pytest.raises(grpc.RpcError) as info:
            list(call(iter([big]), timeout=60, metadata=AUTH))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()


def test_ports_are_the_ones_asked_for_and_the_ingress_is_on_loopback(cluster):
    ports = cluster["ports"]
    assert _listeners(ports["--port"]) == {"127.0.0.1"}  # --host's default: no other interface
    assert _listeners(ports["--metrics-port"]) == {"127.0.0.1"}
    assert _listeners(ports["--fallback-http-port"]) == {"127.0.0.1"}
    for flag in ("--stats-port", "--exporter-port", "--fallback-port"):  # Ray binds these on every interface
        assert _listeners(ports[flag]), flag  # the chosen ones (documented), not Serve's fixed defaults
    for flag, port in ports.items():
        assert f"{flag} {port}" in cluster["up"]  # `up` lists every port it opened


def test_haproxy_admin_socket_is_private_to_this_cluster(cluster):
    """Serve's HAProxy admin socket (mode 666, admin level) lives in this cluster's owner-only directory."""
    private = json.loads((cluster["home"] / "clusters" / f"{NAME}.json").read_text())["private_dir"]
    assert os.stat(private).st_mode & 0o077 == 0
    configs = [a for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "haproxy"
               for a in p.info["cmdline"] or [] if a.startswith(private + "/")]
    assert configs, "no HAProxy runs with a config in this cluster's private directory"
    sockets = [ln.split()[2] for ln in open(configs[0]).read().splitlines() if ln.strip().startswith("stats socket")]
    assert sockets and all(path.startswith(private + "/") for path in sockets), sockets


def test_tokens_are_checked_through_the_ingress(cluster):
    address = f"127.0.0.1:{cluster['ports']['--port']}"
    for token in (None, "not-a-token"):
        client = EdgeClient(address, token=token)
        try:
            with pytest.raises(grpc.RpcError) as info:
                client.health()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            client.close()
    client = EdgeClient(address, token=TOKEN)
    try:
        assert client.health().status == "SERVING"
    finally:
        client.close()


def test_status_and_down_act_on_the_named_cluster_only(cluster):
    home = cluster["home"]
    assert "no gelato cluster named 'other' is up" in _error_line(_gelato(["cluster", "status", "--name", "other"],
                                                                          home))
    assert "no gelato cluster named 'default' is up" in _error_line(_gelato(["cluster", "status"], home))
    down = _gelato(["cluster", "down", "--name", "other"], home)
    assert down.returncode == 0 and "no gelato cluster named 'other' was up" in down.stdout
    status = _gelato(["cluster", "status", "--name", NAME, "--json"], home)
    assert status.returncode == 0, status.stderr
    result = json.loads(status.stdout)
    assert result["name"] == NAME and result["grpc_port"] == cluster["ports"]["--port"]
    assert len(result["replicas"]) == 1 and result["replicas"][0]["healthy"]

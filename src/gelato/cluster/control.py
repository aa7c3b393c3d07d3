"""Starting, inspecting and stopping a gelato cluster (``gelato cluster up / status / down``).

:class:`LocalCluster` is the driver: it starts Ray on this machine (or joins ``address``), checks the ports,
deploys the edge replicas (:func:`gelato.cluster.app.deploy`) and, on :meth:`~LocalCluster.stop`, shuts
Serve down and stops the Ray it started. ``gelato cluster up`` runs one in a background process
(``python -m gelato.cluster.head``) that records itself in ``$GELATO_HOME/clusters/<name>.json``; ``status``
and ``down`` find it there by name, so they act on that cluster only. Every failure is a :class:`ClusterError` with a one-line message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gelato.cluster.app import APP, ClusterError, ClusterSpec

EXTRA = "pip install -e '.[cluster]'"


def select_ingress(spec: ClusterSpec, private_dir: str | None = None) -> None:
    """Set what Serve reads from the environment (:func:`gelato.cluster.app.ray_env`) before Ray starts: its
    processes inherit it. The ingress flags must be set before Ray Serve is imported in this process too."""
    from gelato.cluster.app import INGRESS_MODES, ray_env

    flags = INGRESS_MODES[spec.ingress]
    if "ray.serve" in sys.modules and any(os.environ.get(k, "0") != v for k, v in flags.items()):
        raise ClusterError(f"the {spec.ingress!r} ingress must be chosen before Ray Serve is imported in this "
                           f"process (set {' '.join(f'{k}={v}' for k, v in flags.items())})")
    os.environ.update(ray_env(spec, private_dir))
    # a replica being stopped keeps serving this long so a load balancer can notice (Serve's default 30 s);
    # HAProxy here is reconfigured by Serve itself
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "3")


def require_ray() -> None:
    """ClusterError naming the extra when Ray Serve cannot be imported."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as exc:
        raise ClusterError(f"Ray Serve is not installed ({exc.name or exc}): gelato cluster needs the 'cluster' "
                           f"extra: {EXTRA}") from None


def port_in_use(port: int) -> bool:
    """True when a TCP listener could not take ``port`` on every interface (Serve's proxies bind all of them)."""
    for family, address in ((socket.AF_INET, ("0.0.0.0", port)), (socket.AF_INET6, ("::", port))):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                # as the servers that will listen there do: connections of a cluster that just stopped, still in
                # TIME_WAIT, do not hold the port; only a listener does
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 on this host
                continue
            return True
    return False


def check_ports(spec: ClusterSpec) -> None:
    """One ClusterError line naming the flag of the first fixed port (:meth:`ClusterSpec.fixed_ports`) in use,
    or ``--host`` when it is no address of this machine."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in spec.host else socket.AF_INET) as sock:
            sock.bind((spec.host, 0))
    except OSError as exc:
        raise ClusterError(f"--host {spec.host}: cannot listen there ({exc.strerror or exc})") from None
    for flag, port in spec.fixed_ports().items():
        if port_in_use(port):
            raise ClusterError(f"{flag} {port} is in use (pick another with {flag})")


def state_path(name: str = "default") -> Path:
    """The record of the cluster ``name`` that ``gelato cluster up --name`` started (one file per name)."""
    from gelato.models.fetch import gelato_home
    return gelato_home() / "clusters" / f"{name}.json"


class LocalCluster:
    """A Ray driver that deploys the edge replicas; a context manager (tests, ``gelato.cluster.head``)."""

    def __init__(self, spec: ClusterSpec, address: str | None = None, num_cpus: float | None = None,
                 object_store_mb: int = 128) -> None:
        self.spec = spec
        self.address = address
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.gcs_address: str | None = None
        self._started_ray = False
        self.private_dir: str | None = None  # this cluster's HAProxy admin socket and state (owner-only)

    def start(self, timeout_s: float = 300.0) -> LocalCluster:
        check_ports(self.spec)
        if self.spec.ingress == "haproxy" and self.private_dir is None:
            self.private_dir = tempfile.mkdtemp(prefix=f"gelato-{self.spec.name}-")
        select_ingress(self.spec, self.private_dir)
        require_ray()
        import ray

        from gelato.cluster.app import deploy
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if self.address is None:
                cpus = self.num_cpus or max(float(os.cpu_count() or 1), self.spec.replicas * self.spec.replica_cpus)
                kwargs.update(num_cpus=cpus, object_store_memory=self.object_store_mb << 20)
            try:
                info = ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"could not start or join Ray ({_first_line(exc)})") from None
            self._started_ray = self.address is None
            self.gcs_address = info.address_info.get("gcs_address") or info.address_info.get("address")
        try:
            deploy(self.spec, timeout_s)
        except ClusterError:
            self.stop()
            raise
        except Exception as exc:  # Serve's own errors: one line
            self.stop()
            raise ClusterError(f"deploying the edge replicas failed: {_first_line(exc)}") from None
        return self

    def stop(self) -> None:
        import ray
        from ray import serve

        try:
            if ray.is_initialized():
                try:
                    serve.shutdown() if self._started_ray else serve.delete(APP)
                finally:
                    if self._started_ray:
                        ray.shutdown()
        finally:
            _remove_private_dir(self.private_dir)
            self.private_dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _remove_private_dir(path: str | None) -> None:
    """Remove a cluster's private directory (only one :class:`LocalCluster` made: ``gelato-*`` in the temp dir)."""
    if path and Path(path).parent == Path(tempfile.gettempdir()) and Path(path).name.startswith("gelato-"):
        shutil.rmtree(path, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# ---------------------------------------------------------------------------- the background head process

def read_state(name: str = "default") -> dict | None:
    path = state_path(name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def up(spec: ClusterSpec, address: str | None = None, num_cpus: float | None = None,
       timeout_s: float = 300.0) -> dict:
    """Start the head process in the background and wait until its replicas serve; returns its state."""
    require_ray()
    state = read_state(spec.name)
    if state and _alive(int(state.get("pid", 0))):
        raise ClusterError(f"the gelato cluster {spec.name!r} is already up (pid {state['pid']}, gRPC port "
                           f"{state.get('port')}); run `gelato cluster down --name {spec.name}` first")
    check_ports(spec)
    path = state_path(spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    log_path = path.with_suffix(".log")
    cmd = [sys.executable, "-m", "gelato.cluster.head", "--spec", json.dumps(spec.to_dict()),
           "--state", str(path), *(["--address", address] if address else []),
           *(["--num-cpus", str(num_cpus)] if num_cpus else [])]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + timeout_s + 60
    while time.monotonic() < deadline:
        state = read_state(spec.name)
        if state and state.get("pid") == proc.pid and (state.get("ready") or state.get("error")):
            if state.get("error"):
                proc.wait(30)
                path.unlink(missing_ok=True)
                raise ClusterError(state["error"])
            return state
        if proc.poll() is not None:
            raise ClusterError(f"the cluster process exited with status {proc.returncode} (log: {log_path})")
        time.sleep(0.5)
    proc.terminate()
    raise ClusterError(f"the cluster did not come up within {timeout_s:.0f} s (log: {log_path})")


def connect(name: str = "default") -> dict:
    """Join the running cluster ``name`` as a driver (for status); returns its state."""
    state = read_state(name)
    if state and state.get("auth_mode"):  # before Ray is imported: it reads the mode once
        os.environ.setdefault("RAY_AUTH_MODE", state["auth_mode"])
    require_ray()
    if not state or not _alive(int(state.get("pid", 0))):
        raise ClusterError(f"no gelato cluster named {name!r} is up (run `gelato cluster up --name {name}`)")
    import logging

    import ray
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    if not ray.is_initialized():
        try:
            ray.init(address=state["gcs_address"], log_to_driver=False, configure_logging=False,
                     logging_level="ERROR")
        except (ConnectionError, RuntimeError) as exc:
            raise ClusterError(f"could not reach the cluster's Ray at {state['gcs_address']} "
                               f"({_first_line(exc)})") from None
    return state


def status(name: str = "default", timeout_s: float = 10.0) -> dict:
    from gelato.cluster.app import cluster_status

    state = connect(name)
    import ray
    try:
        result = cluster_status(timeout_s)
    finally:
        ray.shutdown()  # this driver only; the cluster keeps running
    host = state.get("host", "127.0.0.1")
    result.update(name=name, ingress=state.get("ingress"), host=host, grpc_port=state["port"],
                  metrics_url=f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{state['metrics_port']}"
                              "/metrics", head_pid=state["pid"])
    return result


def down(name: str = "default", timeout_s: float = 60.0) -> dict | None:
    """Stop the head process of the cluster ``name`` (it shuts Serve and its Ray down); None when none was up."""
    state = read_state(name)
    if not state:
        return None
    pid = int(state.get("pid", 0))
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    _remove_private_dir(state.get("private_dir"))  # the head may end before it removes it (Ray's SIGTERM handler)
    state_path(name).unlink(missing_ok=True)
    return state

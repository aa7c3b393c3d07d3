"""The user-space link emulator: rate, delay, fading draws, burst loss; generation through it is unchanged."""

from __future__ import annotations

import socket
import threading

import pytest
from edge_helpers import PROMPTS, reference, remote_generate, start_edge

from gelato.link.proxy import LinkConfig, LinkEmulator, LinkThread
from gelato.policies import StaticPolicy

pytestmark = pytest.mark.slow  # starts an edge server


def _sink_server():
    """A TCP server that counts bytes and answers 'ok' at EOF."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def serve():
        conn, _ = sock.accept()
        total = 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            total += len(data)
        conn.sendall(str(total).encode())
        conn.close()
        sock.close()
    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1]


def test_rate_and_delay_are_applied():
    """Bytes are held for their airtime plus the propagation delay, on the emulator's own clock: the sink can only
    answer after the last uplink chunk reached it, so the answer is read no earlier than that chunk was due.
    (A proxy that forwarded at once would read the answer ~0.55 s before the uplink's due time.)"""
    port = _sink_server()
    cfg = LinkConfig(bandwidth_mhz=None, uplink_bps=800_000, downlink_bps=8_000_000, delay_s=0.05)
    payload = b"x" * 50_000  # 0.5 s of airtime at 800 kbit/s
    with LinkThread(f"127.0.0.1:{port}", cfg) as link:
        with socket.create_connection(("127.0.0.1", link.port), timeout=60) as s:  # timeout: a hang guard only
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(100)
        stats = link.stats()
    up, down = stats["up"], stats["down"]
    assert int(answer) == len(payload)
    assert up["bytes"] == len(payload) and up["airtime_s"] == pytest.approx(0.5, rel=1e-6)
    assert down["bytes"] == len(answer) and stats["connections"] == 1
    assert down["last_read_at"] >= up["last_due_at"]  # held until due (the sink saw EOF only after it)
    assert down["last_due_at"] == pytest.approx(down["last_read_at"] + 8 * len(answer) / 8_000_000 + 0.05)


def test_schedule_queues_chunks_behind_the_transmitter():
    """The schedule itself, on explicit clock values: airtime 8 n / rate, a chunk waits for the one before it,
    the delay is added after the airtime, and an idle gap starts a new burst."""
    cfg = LinkConfig(bandwidth_mhz=None, uplink_bps=800_000, downlink_bps=8_000_000, delay_s=0.05, burst_gap_s=0.01)
    link = LinkEmulator("127.0.0.1", 1, cfg)
    assert link._schedule("up", 25_000, now=10.0) == (pytest.approx(10.0 + 0.25 + 0.05), False)  # noqa: SLF001
    # read while the first is still on the air: it starts when the transmitter is free (10.25)
    assert link._schedule("up", 25_000, now=10.1) == (pytest.approx(10.5 + 0.05), False)  # noqa: SLF001
    assert link._schedule("down", 1_000, now=10.1)[0] == pytest.approx(10.1 + 0.001 + 0.05)  # noqa: SLF001
    assert link._schedule("up", 100, now=20.0)[0] == pytest.approx(20.0 + 0.001 + 0.05)  # noqa: SLF001
    up = link.stats.up
    assert (up.bytes, up.chunks, up.bursts) == (50_100, 3, 2) and up.airtime_s == pytest.approx(0.501)
    assert (up.last_read_at, up.last_due_at) == (20.0, pytest.approx(20.051))


def test_generation_through_fading_link_is_unchanged(pair):
    target, draft = pair
    server = start_edge(target)
    try:
        cfg = LinkConfig(bandwidth_mhz=1.0, distance_km=0.175, delay_s=0.002, seed=1)
        with LinkThread(server.address, cfg) as link:
            result, verifier = remote_generate(link.address, draft, PROMPTS[0], 16, policy=StaticPolicy(4))
            stats = link.stats()
    finally:
        server.stop()
    assert result.token_ids == reference(target, PROMPTS[0], 16)
    assert stats["up"]["bytes"] > verifier.stats.up_bytes  # gRPC/HTTP2 framing on top of the payload
    assert stats["channel_draws"] >= result.metrics.rounds  # one fading draw per uplink burst
    assert stats["up"]["airtime_s"] > 0 and stats["last_uplink_bps"] > 1e5


def test_burst_loss_drops_connections_and_rounds_are_retried(pair):
    target, draft = pair
    server = start_edge(target)
    try:
        cfg = LinkConfig(bandwidth_mhz=None, uplink_bps=5e6, downlink_bps=5e6, loss=0.3, seed=3, burst_gap_s=0.001)
        with LinkThread(server.address, cfg) as link:
            result, verifier = remote_generate(link.address, draft, PROMPTS[2], 20, policy=StaticPolicy(3),
                                               rpc_timeout=1.0, unreachable_after=20.0)
            stats = link.stats()
    finally:
        server.stop()
    assert result.token_ids == reference(target, PROMPTS[2], 20)
    assert stats["drops"] >= 1 and verifier.stats.retries >= 1


def test_link_config_validation():
    with pytest.raises(ValueError, match="loss"):
        LinkConfig(loss=1.0)
    with pytest.raises(ValueError, match="uplink_bps"):
        LinkConfig(bandwidth_mhz=None)


def test_link_counts_http2_frames_and_grpc_framing_per_message_is_as_billed(pair):
    """The link tallies HTTP/2 frames; in a stream's steady state every message costs GRPC_FRAMING_BYTES on
    top of its protobuf payload (one DATA frame header + gRPC prefix, two WINDOW_UPDATEs), which is what
    ``--framing grpc`` bills in the modelled clock."""
    from gelato.wire.payload import GRPC_FRAMING_BYTES

    target, draft = pair
    edge = start_edge(target)
    snaps = {}
    try:
        with LinkThread(edge.address, LinkConfig(bandwidth_mhz=None, uplink_bps=1e9, downlink_bps=1e9)) as link:
            def on_round(record):
                if record.index in (4, 19):
                    snaps[record.index] = link.stats()
            result, verifier = remote_generate(link.address, draft, PROMPTS[0], 40, policy=StaticPolicy(1),
                                               on_round=on_round)
            final = link.stats()
    finally:
        edge.stop()
    assert result.token_ids == reference(target, PROMPTS[0], 40)
    assert final["up"]["frame_bytes"]["PREFACE"] == 24
    assert final["down"]["frames"]["SETTINGS"] >= 1 and final["up"]["frames"]["HEADERS"] >= 1
    for direction in ("up", "down"):  # every byte through the proxy is accounted to a frame
        assert sum(final[direction]["frame_bytes"].values()) == final[direction]["bytes"]
    a, b = snaps[4], snaps[19]
    timed = verifier.stats.timings[5:20]
    for direction, payload in (("up", sum(t.up_bytes for t in timed)), ("down", sum(t.down_bytes for t in timed))):
        assert b[direction]["frames"]["DATA"] - a[direction]["frames"]["DATA"] == 15
        assert b[direction]["frames"]["WINDOW_UPDATE"] - a[direction]["frames"]["WINDOW_UPDATE"] == 30
        framing = (b[direction]["bytes"] - a[direction]["bytes"] - payload) / 15
        assert framing == GRPC_FRAMING_BYTES

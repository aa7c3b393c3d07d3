"""Link emulation in user space: a TCP proxy on loopback that holds bytes back like a wireless link.

Each direction is one transmitter shared by all connections through the proxy. A chunk of ``n``
bytes read at time ``t`` starts transmitting at ``max(t, transmitter free)``, occupies the link for
``8 n / rate`` seconds (its airtime) and is delivered ``delay_s`` after it finishes (propagation).
A *burst* starts when a chunk arrives after the transmitter has been idle for ``burst_gap_s``; each
uplink burst (one round's DraftUp, in practice) draws a new channel state from the system model
(:class:`gelato.system.channel.WirelessChannel`: path loss times Rayleigh fading, Shannon rate,
seeded), and the downlink uses the same state (reciprocal within a round). With ``loss`` > 0 a burst is
lost with that probability, and the proxy drops the connection carrying it (TCP has no silent loss;
gRPC then sees UNAVAILABLE and the client retries its round).

No kernel support is needed (this machine has no netem); for kernel-level shaping see
``scripts/netns_link.sh``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from gelato.link.h2frames import FrameCounter
from gelato.wire.aio import background_loop

log = logging.getLogger("gelato.link.proxy")


@dataclass
class LinkConfig:
    bandwidth_mhz: float | None = 1.0  # channel-model bandwidth; None: fixed rates below
    downlink_bandwidth_mhz: float | None = None  # default: the uplink's
    distance_km: float = 0.175  # path loss 128.1 + 37.6 log10(d)
    uplink_power_dbm: float = 23.0
    downlink_power_dbm: float = 30.0
    fading: str = "rayleigh"  # or "none"
    uplink_bps: float | None = None  # fixed rate (overrides the channel model for this direction)
    downlink_bps: float | None = None
    delay_s: float = 0.0  # one-way propagation delay
    loss: float = 0.0  # probability that a burst is lost (the connection carrying it is dropped)
    burst_gap_s: float = 0.002
    seed: int = 0
    chunk_bytes: int = 65536

    def __post_init__(self) -> None:
        if self.bandwidth_mhz is None and (self.uplink_bps is None or self.downlink_bps is None):
            raise ValueError("without a bandwidth (channel model) give both uplink_bps and downlink_bps")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.delay_s < 0 or self.burst_gap_s < 0:
            raise ValueError("delay_s and burst_gap_s must be >= 0")
        for name in ("uplink_bps", "downlink_bps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")


@dataclass
class DirectionStats:
    bytes: int = 0
    chunks: int = 0
    bursts: int = 0
    airtime_s: float = 0.0
    lost_bursts: int = 0
    last_read_at: float = 0.0  # the emulator's loop clock when it read the newest chunk ...
    last_due_at: float = 0.0  # ... and when that chunk is due at the far end (airtime and delay after)
    frames: dict[str, int] = field(default_factory=dict)  # HTTP/2 frames per type (cleartext connections)
    frame_bytes: dict[str, int] = field(default_factory=dict)  # their bytes, 9-byte frame headers included


@dataclass
class LinkStats:
    up: DirectionStats = field(default_factory=DirectionStats)
    down: DirectionStats = field(default_factory=DirectionStats)
    connections: int = 0
    drops: int = 0
    channel_draws: int = 0
    last_uplink_bps: float = 0.0
    last_downlink_bps: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class _RateSource:
    """Per-burst rates: the system channel model when a bandwidth is given, else fixed rates."""

    def __init__(self, cfg: LinkConfig) -> None:
        self.cfg = cfg
        self.channel = None
        if cfg.bandwidth_mhz is not None:
            from gelato.system.channel import ChannelConfig, PathLoss, WirelessChannel
            self.channel = WirelessChannel(ChannelConfig(
                uplink_bandwidth_hz=cfg.bandwidth_mhz * 1e6,
                downlink_bandwidth_hz=None if cfg.downlink_bandwidth_mhz is None else cfg.downlink_bandwidth_mhz * 1e6,
                uplink_power_dbm=cfg.uplink_power_dbm, downlink_power_dbm=cfg.downlink_power_dbm,
                path_loss=PathLoss(distance_km=cfg.distance_km), fading=cfg.fading), seed=cfg.seed)
        self.up_bps = cfg.uplink_bps or 0.0
        self.down_bps = cfg.downlink_bps or 0.0
        self.draws = 0
        if self.channel is not None:
            self.draw()

    def draw(self) -> None:
        if self.channel is None:
            return
        state = self.channel.next_state()
        self.draws += 1
        self.up_bps = self.cfg.uplink_bps or max(state.uplink_bps, 1.0)
        self.down_bps = self.cfg.downlink_bps or max(state.downlink_bps, 1.0)


class _Transmitter:
    def __init__(self, stats: DirectionStats) -> None:
        self.stats = stats
        self.free_at = 0.0


class LinkEmulator:
    """Asyncio TCP proxy ``listen -> upstream`` with per-direction rate, delay and burst loss."""

    def __init__(self, upstream_host: str, upstream_port: int, config: LinkConfig | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.config = config or LinkConfig()
        self.stats = LinkStats()
        self.rates = _RateSource(self.config)
        self._rng = random.Random(self.config.seed ^ 0x5EED)
        self._tx = {"up": _Transmitter(self.stats.up), "down": _Transmitter(self.stats.down)}
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("link %s:%d -> %s:%d (%s)", host, self.port, *self.upstream, self.describe())
        return self.port

    def describe(self) -> str:
        c = self.config
        rate = (f"{c.bandwidth_mhz} MHz channel at {c.distance_km} km, {c.fading} fading" if c.bandwidth_mhz
                else f"{c.uplink_bps:.0f}/{c.downlink_bps:.0f} bit/s")
        return f"{rate}, delay {c.delay_s * 1e3:.1f} ms, loss {c.loss:.3f}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for a, b in list(self._conns):
                a.close()
                b.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            log.warning("link: upstream %s:%d unreachable: %s", *self.upstream, exc)
            client_w.close()
            return
        self.stats.connections += 1
        pair = (client_w, up_w)
        self._conns.add(pair)
        dropped = asyncio.Event()
        up, down = self.stats.up, self.stats.down
        up_frames = FrameCounter(up.frames, up.frame_bytes, client=True)
        down_frames = FrameCounter(down.frames, down.frame_bytes, client=False, peer=up_frames)
        tasks = [asyncio.create_task(self._pump("up", client_r, up_w, dropped, up_frames)),
                 asyncio.create_task(self._pump("down", up_r, client_w, dropped, down_frames))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if dropped.is_set():
                for t in tasks:
                    t.cancel()
            else:
                await asyncio.wait(tasks)
        finally:
            for t in tasks:
                t.cancel()
            for w in pair:
                w.close()
            self._conns.discard(pair)

    def _schedule(self, direction: str, nbytes: int, now: float) -> tuple[float, bool]:
        """Reserve airtime for a chunk; returns (delivery time, lost)."""
        tx = self._tx[direction]
        cfg = self.config
        lost = False
        if now - tx.free_at > cfg.burst_gap_s:  # the transmitter was idle: a new burst
            tx.stats.bursts += 1
            if direction == "up":
                self.rates.draw()
                self.stats.channel_draws = self.rates.draws
            if cfg.loss and self._rng.random() < cfg.loss:
                tx.stats.lost_bursts += 1
                lost = True
        rate = self.rates.up_bps if direction == "up" else self.rates.down_bps
        self.stats.last_uplink_bps, self.stats.last_downlink_bps = self.rates.up_bps, self.rates.down_bps
        airtime = 8.0 * nbytes / rate
        start = max(now, tx.free_at)
        tx.free_at = start + airtime
        tx.stats.airtime_s += airtime
        tx.stats.bytes += nbytes
        tx.stats.chunks += 1
        tx.stats.last_read_at, tx.stats.last_due_at = now, tx.free_at + cfg.delay_s
        return tx.stats.last_due_at, lost

    async def _pump(self, direction: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    dropped: asyncio.Event, frames: FrameCounter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    break
                at, data = item
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(self.config.chunk_bytes)
                if not data:
                    break
                frames.feed(data)
                at, lost = self._schedule(direction, len(data), loop.time())
                if lost:
                    self.stats.drops += 1
                    log.info("link: %s burst lost; dropping the connection", direction)
                    dropped.set()
                    sender.cancel()
                    return
                queue.put_nowait((at, data))
            queue.put_nowait(None)
            await sender
        except (ConnectionError, OSError):
            dropped.set()
        finally:
            if not sender.done():
                sender.cancel()


class LinkThread:
    """A :class:`LinkEmulator` on the shared background loop (tests, benchmarks)."""

    def __init__(self, upstream: str, config: LinkConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        h, _, p = upstream.rpartition(":")
        self.link = LinkEmulator(h or "127.0.0.1", int(p), config)
        self.host, self.requested_port = host, port
        self.port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stats(self) -> dict:
        async def snap():
            return self.link.stats.to_dict()
        return asyncio.run_coroutine_threadsafe(snap(), background_loop()).result(10)

    def __enter__(self) -> LinkThread:
        self.port = asyncio.run_coroutine_threadsafe(self.link.start(self.host, self.requested_port),
                                                     background_loop()).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.link.stop(), background_loop()).result(10)


def parse_upstream(upstream: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError (one line) otherwise."""
    h, sep, p = upstream.rpartition(":")
    if not sep or not p.isdigit() or not 0 < int(p) < 65536:
        raise ValueError(f"upstream {upstream!r} is not HOST:PORT with a port in 1..65535")
    return h or "127.0.0.1", int(p)


def run_link(listen: int, upstream: str, config: LinkConfig, host: str = "127.0.0.1",
             report_every_s: float = 5.0, report: Callable[[dict], None] | None = None,
             on_started: Callable[[int], None] | None = None) -> None:
    """Run the proxy until interrupted, reporting bytes and airtime every ``report_every_s`` (``gelato link``).

    Raises ValueError for a bad upstream and OSError when ``host:listen`` cannot be bound."""
    emulator = LinkEmulator(*parse_upstream(upstream), config)
    report = report or (lambda s: log.info("link stats: %s", s))

    async def main() -> None:
        await emulator.start(host, listen)
        if on_started is not None:
            on_started(emulator.port)
        last = None
        try:
            while True:
                await asyncio.sleep(report_every_s)
                snap = emulator.stats.to_dict()
                if snap != last:
                    report(snap)
                    last = snap
        finally:
            await emulator.stop()
            report(emulator.stats.to_dict())

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


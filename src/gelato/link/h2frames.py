"""Counting HTTP/2 frames in a TCP byte stream, so the link emulator can say where a stream's bytes go.

A gRPC connection is HTTP/2: the client sends the 24-byte preface, then each side sends frames of a 9-byte
header (24-bit length, type, flags, stream id) and a payload. :class:`FrameCounter` is fed the bytes of one
direction as they pass and tallies frames and bytes per frame type. Anything that is not cleartext HTTP/2
(TLS, another protocol) switches it off: its tallies then stay empty.
"""

from __future__ import annotations

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
               6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
HEADER_BYTES = 9


class FrameCounter:
    """Tallies the frames of one direction of one connection into ``frames`` / ``frame_bytes`` (dicts shared by
    every connection of a link). ``client=True``: this direction starts with the preface; a server direction
    counts only while its ``peer`` (the client direction) is still cleartext HTTP/2."""

    def __init__(self, frames: dict[str, int], frame_bytes: dict[str, int], *, client: bool,
                 peer: FrameCounter | None = None) -> None:
        self.frames, self.frame_bytes, self.peer = frames, frame_bytes, peer
        self._buffer = b""
        self._preface_left = len(PREFACE) if client else 0
        self.enabled = True

    def _add(self, name: str, nbytes: int, frames: int = 1) -> None:
        self.frames[name] = self.frames.get(name, 0) + frames
        self.frame_bytes[name] = self.frame_bytes.get(name, 0) + nbytes

    def feed(self, data: bytes) -> None:
        if not self.enabled or (self.peer is not None and not self.peer.enabled):
            return
        self._buffer += data
        if self._preface_left:
            n = min(self._preface_left, len(self._buffer))
            start = len(PREFACE) - self._preface_left
            if self._buffer[:n] != PREFACE[start:start + n]:
                self.enabled, self._buffer = False, b""
                return
            self._buffer, self._preface_left = self._buffer[n:], self._preface_left - n
            self._add("PREFACE", n, frames=0)
        while len(self._buffer) >= HEADER_BYTES:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < HEADER_BYTES + length:
                break
            self._add(FRAME_TYPES.get(self._buffer[3], f"TYPE_{self._buffer[3]}"), HEADER_BYTES + length)
            self._buffer = self._buffer[HEADER_BYTES + length:]

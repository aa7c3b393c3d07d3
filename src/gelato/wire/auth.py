"""Per-device bearer tokens and TLS material.

Tokens: every call carries metadata ``authorization: Bearer <token>``; the edge maps the token to a
device name and answers UNAUTHENTICATED otherwise. A token file has one token per line, optionally
``device-name:token``; blank lines and ``#`` comments are ignored. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import grpc

from gelato.wire.errors import RequestError

AUTH_HEADER = "authorization"


def parse_token_lines(lines: Iterable[str]) -> dict[str, str]:
    """token -> device name, from ``token`` or ``name:token`` lines."""
    tokens: dict[str, str] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.rpartition(":")
        if not sep:
            name, token = f"device-{len(tokens) + 1}", line
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise ValueError(f"token line {n} is malformed (expected 'token' or 'name:token')")
        tokens[token] = name.strip() or f"device-{len(tokens) + 1}"
    return tokens


def load_tokens(source: str | Path | Sequence[str] | Mapping[str, str] | None) -> dict[str, str] | None:
    """Token table from a file path, a list of tokens/``name:token`` strings, or a mapping. None = no auth."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"token file not found: {path}")
        tokens = parse_token_lines(path.read_text().splitlines())
        if not tokens:
            raise ValueError(f"token file {path} holds no token")
        return tokens
    return parse_token_lines(source)


class TokenAuthenticator:
    """Checks ``authorization: Bearer ...`` metadata against a token table."""

    def __init__(self, tokens: Mapping[str, str] | None) -> None:
        self._tokens = [(t.encode(), name) for t, name in (tokens or {}).items()]
        self.enabled = tokens is not None

    def device_of(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
        """The device name of a call, or raise RequestError(UNAUTHENTICATED). None when auth is off."""
        if not self.enabled:
            return None
        value = None
        for key, val in metadata or ():
            if key.lower() == AUTH_HEADER:
                value = val.decode() if isinstance(val, bytes) else val
                break
        if value is None:
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "authorization metadata must be 'Bearer <token>'")
        given = token.strip().encode()
        found = None
        for known, name in self._tokens:  # check all, constant time each
            if hmac.compare_digest(known, given):
                found = name
        if found is None:
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        return found


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def read_pem(path: str | Path | None) -> bytes | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TLS file not found: {path}")
    return path.read_bytes()


def check_key_pair(cert_chain: bytes, private_key: bytes) -> None:
    """Raise ValueError (one line) unless ``cert_chain`` and ``private_key`` are PEM and belong together."""
    import ssl
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert_chain)
        key_path.write_bytes(private_key)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise ValueError(f"the TLS certificate and key are not valid PEM or do not belong together "
                             f"({exc.reason or exc})") from None


def server_credentials(cert_chain: bytes, private_key: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(private_key, cert_chain)])


def channel_credentials(root_ca: bytes | None) -> grpc.ChannelCredentials:
    """TLS credentials; ``root_ca`` None uses the system roots."""
    return grpc.ssl_channel_credentials(root_certificates=root_ca)

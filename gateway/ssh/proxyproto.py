"""The PROXY protocol (versions 1 and 2) that load balancers put before the client's own bytes.

HAProxy's `send-proxy` (v1, one text line) and `send-proxy-v2` (binary) tell the gateway who the
real client is. This module is pure: it classifies and parses bytes; reading them off a socket
without taking any SSH bytes is the listener's job (`gateway.ssh.listener`).

    kind = classify(data)          # "v1", "v2", "none" (no header: plain SSH), or "more"
    total = header_length(data)    # the header's full size once known, else None
    header = parse(data[:total])   # ProxyHeader
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
# The v1 line is at most 107 bytes including CRLF ("PROXY TCP6" with two full IPv6 addresses).
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
# The spec allows 64 KiB of TLVs; HAProxy sends none unless told to. Anything this large is not
# from our balancer.
V2_MAX = V2_FIXED + 2048

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_V2_FAMILIES = {0x11: ("TCP4", 12), 0x21: ("TCP6", 36)}


class ProxyHeaderError(ValueError):
    """The bytes are not a well-formed PROXY header; the message says what is wrong."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int
    command: str  # "PROXY": addresses are the client's; "LOCAL": the balancer's own connection
    family: str  # "TCP4", "TCP6" or "UNKNOWN" (the real peer address stands)
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int

    @property
    def client(self) -> tuple[str, int] | None:
        """The address to record for this connection, or None to keep the socket's peer."""
        return self.source if self.command == "PROXY" and self.family != "UNKNOWN" else None


def classify(data: bytes) -> str:
    """Which header `data` starts with: "v1", "v2", "none", or "more" (too few bytes to tell)."""
    if data.startswith(V1_PREFIX):
        return "v1"
    if data.startswith(V2_SIGNATURE):
        return "v2"
    if V1_PREFIX.startswith(data) or V2_SIGNATURE.startswith(data):
        return "more"
    return "none"


def header_length(data: bytes) -> int | None:
    """The header's total length in bytes, or None while more bytes are needed.

    Every byte of `data` before that length belongs to the header, so a reader may consume what
    it has seen even before the length is known.
    """
    kind = classify(data)
    if kind == "v1":
        end = data.find(b"\r\n", 0, V1_MAX)
        if end >= 0:
            return end + 2
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX} bytes")
        if b"\n" in data:
            raise ProxyHeaderError("PROXY v1 line ends without CR LF")
        return None
    if kind == "v2":
        if len(data) < V2_FIXED:
            return None
        total = V2_FIXED + struct.unpack("!H", data[14:16])[0]
        if total > V2_MAX:
            raise ProxyHeaderError(f"PROXY v2 header of {total} bytes is larger than {V2_MAX}")
        return total
    if kind == "more":
        return None
    raise ProxyHeaderError("no PROXY header")


def parse(data: bytes) -> ProxyHeader:
    """Parse one complete header (exactly `header_length(data)` bytes; more is an error)."""
    total = header_length(data)
    if total is None or len(data) < total:
        raise ProxyHeaderError("PROXY header is incomplete")
    if len(data) != total:
        raise ProxyHeaderError("bytes after the PROXY header were passed to the parser")
    if classify(data) == "v1":
        return _parse_v1(data)
    return _parse_v2(data)


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"'{text[:45]}' is not an IP address") from None
    if address.version != version:
        raise ProxyHeaderError(f"'{text}' is not an IPv{version} address")
    return str(address)


def _port(text: str) -> int:
    # The spec forbids leading zeros and signs; a balancer never sends them.
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyHeaderError(f"'{text[:8]}' is not a port number")
    return int(text)


def _parse_v1(data: bytes) -> ProxyHeader:
    try:
        line = data[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    parts = line.split(" ")
    family = parts[1] if len(parts) > 1 else ""
    if family == "UNKNOWN":
        # Whatever follows UNKNOWN is to be ignored (the spec's words).
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, len(data))
    if family not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"PROXY v1 family '{family[:10]}' is not TCP4, TCP6 or UNKNOWN")
    if len(parts) != 6:
        raise ProxyHeaderError("PROXY v1 line needs: family, two addresses and two ports")
    version = 4 if family == "TCP4" else 6
    source = (_address(parts[2], version), _port(parts[4]))
    destination = (_address(parts[3], version), _port(parts[5]))
    return ProxyHeader(1, "PROXY", family, source, destination, len(data))


def _parse_v2(data: bytes) -> ProxyHeader:
    version_command, family_byte = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2 header has version {version_command >> 4}, not 2")
    command = _V2_COMMANDS.get(version_command & 0x0F)
    if command is None:
        raise ProxyHeaderError(f"PROXY v2 command {version_command & 0x0F} is unknown")
    body = data[V2_FIXED:]
    if command == "LOCAL" or family_byte not in _V2_FAMILIES:
        # LOCAL: the balancer speaking for itself (health checks). Unspecified, UDP and UNIX
        # families carry nothing we can record, so the socket's peer address stands.
        return ProxyHeader(2, command, "UNKNOWN", None, None, len(data))
    family, size = _V2_FAMILIES[family_byte]
    if len(body) < size:
        raise ProxyHeaderError(f"PROXY v2 {family} addresses need {size} bytes, the header has {len(body)}")
    width = 4 if family == "TCP4" else 16
    src = ipaddress.ip_address(body[:width])
    dst = ipaddress.ip_address(body[width:2 * width])
    src_port, dst_port = struct.unpack("!HH", body[2 * width:2 * width + 4])
    return ProxyHeader(2, command, family, (str(src), src_port), (str(dst), dst_port), len(data))

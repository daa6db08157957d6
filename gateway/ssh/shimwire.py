"""The wire between the OpenSSH mode's shim and the local replica (`shim_socket`).

The shim (`stdio`, sshd's forced command) sends a SESSION frame (who, which key, the command, the
client's address), then the session's stdin as STDIN frames and STDIN_EOF; the replica answers
with STDOUT and STDERR frames and one EXIT frame (the exit status), then closes.

Hand-written, stdlib only: a frame is one type byte, a 4-byte big-endian length and that many
bytes. A session carries three streams one way and one the other over a single socket, and no
library fits that relay without costing the shim more start-up time than the whole exchange.
"""

from __future__ import annotations

import struct

# The first field of a SESSION frame: a replica refuses a shim of another protocol version (an
# upgrade that replaced the program while the old replica still runs).
VERSION = "1"
HEAD = struct.Struct(">cI")
# stdin is relayed in pieces far below this; a larger frame is a broken or hostile peer.
MAX_FRAME = 1024 * 1024
CHUNK = 64 * 1024

# shim -> replica
SESSION = b"S"  # payload: VERSION, account, fingerprint, command, client address; NUL-separated
STDIN = b"i"
STDIN_EOF = b"z"
# replica -> shim
STDOUT = b"o"
STDERR = b"e"
EXIT = b"x"  # payload: the exit status in decimal; always the last frame


class WireError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEAD.pack(kind, len(payload)) + payload


def frames(kind: bytes, payload: bytes) -> bytes:
    """`payload` as one or more frames of at most CHUNK bytes (one empty frame for no bytes)."""
    if len(payload) <= CHUNK:
        return frame(kind, payload)
    return b"".join(frame(kind, payload[i:i + CHUNK]) for i in range(0, len(payload), CHUNK))


class FrameBuffer:
    """Bytes in, whole frames out: for the blocking side of the socket."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._data += data
        out = []
        while len(self._data) >= HEAD.size:
            kind, size = HEAD.unpack_from(self._data)
            if size > MAX_FRAME:
                raise WireError(f"frame of {size} bytes")
            if len(self._data) < HEAD.size + size:
                break
            out.append((kind, bytes(self._data[HEAD.size:HEAD.size + size])))
            del self._data[:HEAD.size + size]
        return out


class SessionHeader:
    """Who a session is for. (A plain class: `dataclasses` would cost the shim as much time as
    everything else it imports.)"""

    __slots__ = ("account", "client", "command", "fingerprint")

    def __init__(self, account: str, fingerprint: str, command: str, client: str):
        self.account = account
        self.fingerprint = fingerprint  # empty: the account's first active key
        self.command = command  # SSH_ORIGINAL_COMMAND; empty for the legacy HTTP exchange
        self.client = client  # the client's address from SSH_CONNECTION; may be empty

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionHeader) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def encode(self) -> bytes:
        fields = (VERSION, self.account, self.fingerprint, self.command, self.client)
        # sshd's environment cannot carry NUL, so it cannot occur in a field.
        return "\0".join(fields).encode("utf-8", "surrogateescape")

    @classmethod
    def decode(cls, payload: bytes) -> SessionHeader:
        fields = payload.decode("utf-8", "replace").split("\0")
        if fields[0] != VERSION:
            raise WireError(f"protocol version {fields[0][:10]!r}, expected {VERSION}")
        if len(fields) != 5 or not fields[1]:
            raise WireError("malformed session header")
        return cls(*fields[1:])

"""SSH_MSG_KEXINIT payloads (RFC 4253 section 7.1), read without asyncssh: the ten name-lists, the
`first_kex_packet_follows` flag, and whether a guessed key-exchange packet guessed right.

Pure: the SSH server hands it the two payloads asyncssh kept (gateway/ssh/asyncssh_seams.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Message byte and 16-byte cookie, then the name-lists.
_NAMELISTS_START = 17
_NAMELIST_COUNT = 10


@dataclass(frozen=True)
class Kexinit:
    """One side's KEXINIT. Name-list order: kex, host key, ciphers c->s, s->c, MACs c->s, s->c,
    compression c->s, s->c, languages c->s, s->c."""

    namelists: tuple[tuple[str, ...], ...]
    first_kex_packet_follows: bool

    @property
    def kex(self) -> tuple[str, ...]:
        return self.namelists[0]

    @property
    def host_keys(self) -> tuple[str, ...]:
        return self.namelists[1]


def parse(payload: bytes) -> Kexinit | None:
    """The KEXINIT in `payload` (message byte included), or None when it is not a whole one."""
    read = _read_namelists(payload)
    if read is None:
        return None
    lists, end = read
    if len(payload) < end + 1:
        return None
    return Kexinit(lists, payload[end] != 0)


def namelists(payload: bytes) -> list[list[str]]:
    """The ten name-lists of a KEXINIT payload; [] when the payload is not a KEXINIT."""
    read = _read_namelists(payload)
    return [list(names) for names in read[0]] if read else []


def _read_namelists(payload: bytes) -> tuple[tuple[tuple[str, ...], ...], int] | None:
    """The name-lists and the offset just past them; None when the payload is too short."""
    lists: list[tuple[str, ...]] = []
    index = _NAMELISTS_START
    for _ in range(_NAMELIST_COUNT):
        if len(payload) < index + 4:
            return None
        (size,) = struct.unpack(">I", payload[index:index + 4])
        index += 4
        if len(payload) < index + size:
            return None
        text = payload[index:index + size].decode("ascii", "replace")
        lists.append(tuple(text.split(",")) if text else ())
        index += size
    return tuple(lists), index


def guess_is_wrong(client_payload: bytes, server_payload: bytes) -> bool:
    """Whether the key-exchange packet the client sent after its KEXINIT must be ignored.

    RFC 4253 section 7: a guess is wrong when the two sides' *preferred* (first) key exchange or
    host key algorithms differ, whatever the negotiation then picks. The client reaches the same
    verdict on its own and, on a wrong guess, sends its first key-exchange packet again for the
    negotiated algorithm. False when the client sent no guess. (Dropbear's kexguess2@matt.ucc.asn.au
    extension, where the negotiated algorithm decides, applies only when both sides list it; the
    gateway does not.)
    """
    client, server = parse(client_payload), parse(server_payload)
    if client is None or not client.first_kex_packet_follows:
        return False
    if server is None:
        return True
    return _first(client.kex) != _first(server.kex) or _first(client.host_keys) != _first(server.host_keys)


def _first(names: tuple[str, ...]) -> str | None:
    return names[0] if names else None

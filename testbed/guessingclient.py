"""A minimal SSH client that guesses its key exchange, as Dropbear's dbclient does, for tests of how
a server judges the guess (RFC 4253 section 7).

It sends its KEXINIT with `first_kex_packet_follows` set and, right behind it, a curve25519
KEX_ECDH_INIT made with a throwaway key (the guess). When the server's KEXINIT shows the guess was
wrong by the RFC's rule (the first key exchange or host key algorithms differ), it sends a second
KEX_ECDH_INIT with another key, as a conforming client must. It then reads the server's
KEX_ECDH_REPLY and checks the host key's signature of the exchange hash against each of the two
keys: the one that verifies is the packet the server answered. Only ed25519 host keys; it stops
after the reply (no NEWKEYS, no login).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.ssh import kexinit

VERSION = b"SSH-2.0-GuessingClient_1.0"
MSG_KEXINIT = 20
MSG_KEX_ECDH_INIT = 30
MSG_KEX_ECDH_REPLY = 31
BLOCK = 8


@dataclass(frozen=True)
class GuessOutcome:
    """What the client saw: whether it judged its guess wrong (and so sent the packet again), and
    which of its packets the server's reply answers ('guess', 'repeat' or None for neither)."""

    guess_was_wrong: bool
    answered: str | None


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    """A non-negative SSH mpint: minimal big-endian, a zero byte first when the high bit is set."""
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _string(b"\0" + data if data and data[0] & 0x80 else data)


def _packet(payload: bytes) -> bytes:
    padding = BLOCK - (5 + len(payload)) % BLOCK
    if padding < 4:
        padding += BLOCK
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + os.urandom(padding)


def _read_strings(data: bytes, count: int) -> list[bytes]:
    values, index = [], 0
    for _ in range(count):
        (size,) = struct.unpack(">I", data[index:index + 4])
        values.append(data[index + 4:index + 4 + size])
        index += 4 + size
    return values


def kexinit_payload(kex: list[str], host_keys: list[str], *, guess_follows: bool = True) -> bytes:
    """A KEXINIT for this client: the given kex and host key lists, one cipher, MAC and compression."""
    lists = [kex, host_keys, ["aes128-ctr"], ["aes128-ctr"], ["hmac-sha2-256"], ["hmac-sha2-256"],
             ["none"], ["none"], [], []]
    body = b"".join(_string(",".join(names).encode("ascii")) for names in lists)
    return bytes([MSG_KEXINIT]) + os.urandom(16) + body + bytes([guess_follows]) + b"\0\0\0\0"


def _ecdh_init(key: X25519PrivateKey) -> tuple[bytes, bytes]:
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return public, bytes([MSG_KEX_ECDH_INIT]) + _string(public)


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(5)
    length, padding = struct.unpack(">IB", head)
    rest = await reader.readexactly(length - 1)
    return rest[:len(rest) - padding]


async def _read_version(reader: asyncio.StreamReader) -> bytes:
    while True:  # a server may send other lines before its version (RFC 4253 section 4.2)
        line = (await reader.readline()).rstrip(b"\r\n")
        if line.startswith(b"SSH-"):
            return line


def _answers(client_key: X25519PrivateKey, q_c: bytes, reply: bytes, hash_prefix: bytes) -> bool:
    """Does the server's signature in `reply` cover an exchange made with `client_key` (Q_C `q_c`)?"""
    k_s, q_s, signature = _read_strings(reply[1:], 3)
    shared = client_key.exchange(X25519PublicKey.from_public_bytes(q_s))
    exchange_hash = hashlib.sha256(hash_prefix + _string(k_s) + _string(q_c) + _string(q_s)
                                   + _mpint(int.from_bytes(shared, "big"))).digest()
    key_type, host_key = _read_strings(k_s, 2)
    sig_type, sig = _read_strings(signature, 2)
    if key_type != b"ssh-ed25519" or sig_type != b"ssh-ed25519":
        raise ValueError("the guessing client checks ed25519 host keys only")
    try:
        Ed25519PublicKey.from_public_bytes(host_key).verify(sig, exchange_hash)
    except InvalidSignature:
        return False
    return True


async def guess_key_exchange(host: str, port: int, *, kex: list[str], host_keys: list[str],
                             timeout: float = 10.0) -> GuessOutcome:
    """Connect, guess curve25519-sha256 (`kex` must start with it), and report what the server did."""
    if kex[0] != "curve25519-sha256":
        raise ValueError("the guessing client guesses curve25519-sha256 only")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(VERSION + b"\r\n")
            server_version = await _read_version(reader)
            our_kexinit = kexinit_payload(kex, host_keys)
            guess_key, repeat_key = X25519PrivateKey.generate(), X25519PrivateKey.generate()
            guess_q, guess_packet = _ecdh_init(guess_key)
            writer.write(_packet(our_kexinit) + _packet(guess_packet))
            await writer.drain()
            server_kexinit = await _read_packet(reader)
            wrong = kexinit.guess_is_wrong(our_kexinit, server_kexinit)
            repeat_q, repeat_packet = _ecdh_init(repeat_key)
            if wrong:
                writer.write(_packet(repeat_packet))
                await writer.drain()
            reply = await _read_packet(reader)
            if reply[:1] != bytes([MSG_KEX_ECDH_REPLY]):
                return GuessOutcome(wrong, None)
            prefix = _string(VERSION) + _string(server_version) + _string(our_kexinit) + _string(server_kexinit)
            if _answers(guess_key, guess_q, reply, prefix):
                return GuessOutcome(wrong, "guess")
            if wrong and _answers(repeat_key, repeat_q, reply, prefix):
                return GuessOutcome(wrong, "repeat")
            return GuessOutcome(wrong, None)
        finally:
            writer.close()

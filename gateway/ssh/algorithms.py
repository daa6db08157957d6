"""The SSH algorithms the gateway offers: a modern set, and old ones only when asked for.

asyncssh 2.24 enables by default SHA-1 key exchanges (diffie-hellman-group14-sha1, gss-group14-sha1),
RSA key transport (rsa2048-sha256), GSS key exchange, SHA-1 and 64-bit MACs (hmac-sha1, umac-64),
ssh-rsa (SHA-1) host key signatures and zlib compression. The gateway names its lists explicitly so an
asyncssh upgrade never widens them silently. `legacy_algorithms` adds exactly what old clients need
(OpenSSH before 7.2, Python 2 era paramiko): the SHA-1 group14 key exchange, ssh-rsa signatures
and hmac-sha1; connections that use them are marked `legacy_crypto` in the upload events.

Pure functions: the SSH server passes them what it saw on the connection.
"""

from __future__ import annotations

import struct

from gateway.ssh import kexinit
from gateway.ssh.asyncssh_seams import (
    known_ciphers,
    known_kex_algorithms,
    known_mac_algorithms,
    known_signature_algorithms,
)

MODERN_KEX = (
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp521",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
)
LEGACY_KEX = ("diffie-hellman-group14-sha1",)

# No chacha20-poly1305@openssh.com: OpenSSH clients pick it first when offered, and asyncssh builds
# three cipher objects per packet for it, which cost 60 us a packet and capped an upload at about
# 260 MB/s of CPU (bench/large_uploads.py). Without it OpenSSH picks aes128-ctr with an ETM MAC
# (AES-NI; 3-5x cheaper here), which every client since OpenSSH 5.2 speaks.
MODERN_CIPHERS = (
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)

MODERN_MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "umac-128@openssh.com",
)
LEGACY_MACS = ("hmac-sha1",)

# Signature algorithms, for host keys and for users' keys alike.
MODERN_SIGNATURES = (
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
LEGACY_SIGNATURES = ("ssh-rsa",)

LEGACY = frozenset(LEGACY_KEX + LEGACY_MACS + LEGACY_SIGNATURES)


def _available(wanted: tuple[str, ...], known: list[str]) -> list[str]:
    # mlkem768x25519 needs a recent cryptography; offer only what this asyncssh can do.
    have = set(known)
    return [alg for alg in wanted if alg in have]


def kex_algorithms(legacy: bool) -> list[str]:
    return _available(MODERN_KEX + (LEGACY_KEX if legacy else ()), known_kex_algorithms())


def ciphers() -> list[str]:
    return _available(MODERN_CIPHERS, known_ciphers())


def mac_algorithms(legacy: bool) -> list[str]:
    return _available(MODERN_MACS + (LEGACY_MACS if legacy else ()), known_mac_algorithms())


def signature_algorithms(legacy: bool) -> list[str]:
    return _available(MODERN_SIGNATURES + (LEGACY_SIGNATURES if legacy else ()), known_signature_algorithms())


def host_key_algorithms(offered: list[str], legacy: bool) -> list[str]:
    """The subset of a host key's algorithms to offer (an RSA key offers ssh-rsa only if legacy)."""
    allowed = set(signature_algorithms(legacy))
    return [alg for alg in offered if alg in allowed]


def signature_algorithm(signature: bytes) -> str | None:
    """The algorithm name an SSH signature blob starts with (string alg, string sig)."""
    if len(signature) < 4:
        return None
    (size,) = struct.unpack(">I", signature[:4])
    if size > 64 or len(signature) < 4 + size:
        return None
    return signature[4:4 + size].decode("ascii", "replace")


def kexinit_namelists(payload: bytes) -> list[list[str]]:
    """The ten name-lists of an SSH_MSG_KEXINIT payload (see kexinit.Kexinit for their order);
    [] when the payload is not a KEXINIT."""
    return kexinit.namelists(payload)


def negotiated(client: list[str], server: list[str]) -> str | None:
    """The algorithm SSH picks: the client's first choice that the server also offers (RFC 4253 7.1)."""
    offered = set(server)
    return next((alg for alg in client if alg in offered), None)


def legacy_in_use(client_kexinit: bytes, server_kex: list[str], server_host_keys: list[str],
                  mac: str | None, user_signature: str | None) -> bool:
    """Whether this connection needed `legacy_algorithms`: a SHA-1 key exchange, host key
    signature or MAC, or a user signature made with ssh-rsa (SHA-1)."""
    if user_signature in LEGACY or mac in LEGACY:
        return True
    lists = kexinit_namelists(client_kexinit)
    if not lists:
        return False
    chosen = (negotiated(lists[0], server_kex), negotiated(lists[1], server_host_keys))
    return any(alg in LEGACY for alg in chosen if alg)

"""Parsing and judging OpenSSH public keys (what admins register and what clients present)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh

# Policy: DSA is broken by modern standards and OpenSSH has dropped it; RSA below 2048 bits is
# factorable with enough money. Both are refused unless `allow_weak_keys` is set.
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class PublicKey:
    algorithm: str
    fingerprint: str
    bits: int | None
    openssh: str  # "<type> <base64>", no comment
    comment: str

    @property
    def weak(self) -> bool:
        return weakness(self.algorithm, self.bits) is not None


# The first line of every private key format an admin may be handed by mistake: OpenSSH's own,
# PEM (RSA, DSA, EC), PKCS#8 (plain and encrypted) and PuTTY's .ppk (v2 and v3).
PRIVATE_KEY_MARKERS = (
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN DSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----",
    "PuTTY-User-Key-File-",
)


def looks_like_private_key(text: str) -> bool:
    """True when `text` holds a private key (in any format above) rather than public keys."""
    return any(line.lstrip().startswith(PRIVATE_KEY_MARKERS) for line in text.splitlines())


class KeyFormatError(ValueError):
    """The text is not an OpenSSH public key; the message says what was expected."""


def _bits(key: asyncssh.SSHKey) -> int | None:
    pyca = getattr(key, "pyca_key", None)
    return getattr(pyca, "key_size", None)


def from_asyncssh(key: asyncssh.SSHKey, comment: str = "") -> PublicKey:
    algorithm = key.get_algorithm()
    data = key.export_public_key("openssh").decode().split()
    return PublicKey(
        algorithm=algorithm,
        fingerprint=key.get_fingerprint("sha256"),
        bits=_bits(key),
        openssh=" ".join(data[:2]),
        comment=comment,
    )


def parse_public_key(line: str) -> PublicKey:
    """Parse one `<type> <base64> [comment]` line (no options)."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise KeyFormatError("expected '<type> <base64> [comment]', like a line of id_ed25519.pub")
    try:
        key = asyncssh.import_public_key(f"{parts[0]} {parts[1]}")
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise KeyFormatError(f"not a valid OpenSSH public key ({exc})") from None
    return from_asyncssh(key, parts[2].strip() if len(parts) > 2 else "")


def weakness(algorithm: str, bits: int | None) -> str | None:
    """Why a key is weak, or None when it is acceptable."""
    if algorithm == "ssh-dss":
        return "DSA keys are obsolete"
    if algorithm == "ssh-rsa" and bits is not None and bits < MIN_RSA_BITS:
        return f"RSA key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum"
    return None

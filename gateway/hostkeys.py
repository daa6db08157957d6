"""The SSH host keys every replica shares (`host_key_dir`), and `keygen` to make them."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from gateway.errors import ConfigError

# ed25519 first: it signs several times faster than RSA, and handshakes are CPU-bound.
# RSA stays for clients too old to know ed25519.
KEY_FILES = (("ssh_host_ed25519_key", "ssh-ed25519", {}), ("ssh_host_rsa_key", "ssh-rsa", {"key_size": 3072}))


def generate(directory: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Write missing host keys (private 0600, public .pub beside); returns the files written."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, algorithm, options in KEY_FILES:
        path = folder / filename
        if path.exists() and not force:
            continue
        key = asyncssh.generate_private_key(algorithm, comment="pypissh-gateway host key", **options)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key())
        key.write_public_key(str(path) + ".pub")
        written.append(path)
    return written


def load(directory: str | os.PathLike[str]) -> list[asyncssh.SSHKey]:
    folder = Path(directory)
    paths = sorted(folder.glob("ssh_host_*_key"), key=lambda p: (p.name != "ssh_host_ed25519_key", p.name))
    if not paths:
        raise ConfigError(
            f"no host keys in {folder}/; run `pypissh-gateway keygen` once and share the folder with every replica"
        )
    keys = []
    for path in paths:
        try:
            keys.append(asyncssh.read_private_key(str(path)))
        except (asyncssh.KeyImportError, OSError) as exc:
            raise ConfigError(f"cannot read host key {path}: {exc}") from None
    return keys


def fingerprints(directory: str | os.PathLike[str]) -> list[str]:
    return [f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" for key in load(directory)]

"""The SSH host keys every replica shares (`host_key_dir`), and `keygen` to make and rotate them.

`ssh_host_ed25519_key` and `ssh_host_rsa_key` are the keys the server proves itself with. Any other
`ssh_host_*_key` in the folder (`keygen --next` writes `ssh_host_<type>_next_key`) is announced
to clients after login through OpenSSH's host-key update extension, so clients with
UpdateHostKeys learn it. Once they have, `keygen --promote` makes the next keys the primary ones
(the old ones are kept as `*.retired`, no longer served) and clients drop the old key.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from gateway.errors import ConfigError
from gateway.ssh import user_texts

# ed25519 first: it signs several times faster than RSA, and handshakes are CPU-bound.
# RSA stays for clients too old to know ed25519.
KEY_FILES: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("ssh_host_ed25519_key", "ssh-ed25519", {}), ("ssh_host_rsa_key", "ssh-rsa", {"key_size": 3072}))


PRIMARY = tuple(filename for filename, _algorithm, _options in KEY_FILES)


def next_name(filename: str) -> str:
    """`ssh_host_ed25519_key` -> `ssh_host_ed25519_next_key`."""
    return filename[: -len("_key")] + "_next_key"


def generate(directory: str | os.PathLike[str], *, force: bool = False, next_keys: bool = False) -> list[Path]:
    """Write missing host keys (private 0600, public .pub beside); returns the files written.

    With `next_keys`, write the next generation beside the current keys instead (see the module
    notes on rotation).
    """
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for filename, algorithm, options in KEY_FILES:
        path = folder / (next_name(filename) if next_keys else filename)
        if path.exists() and not force:
            continue
        key = asyncssh.generate_private_key(algorithm, comment="pypissh-gateway host key", **options)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key())
        key.write_public_key(str(path) + ".pub")
        written.append(path)
    return written


def back_up(directory: str | os.PathLike[str], stamp: str) -> list[tuple[Path, Path]]:
    """Rename the current primary keys (and their .pub) to `<name>.replaced-<stamp>` beside them,
    so `generate` writes new ones and the old stay at hand. Returns the renames done."""
    folder = Path(directory)
    moves: list[tuple[Path, Path]] = []
    for filename in PRIMARY:
        for suffix in ("", ".pub"):
            old = folder / (filename + suffix)
            if old.exists():
                backup = folder / f"{filename}{suffix}.replaced-{stamp}"
                old.replace(backup)
                moves.append((old, backup))
    return moves


def existing(directory: str | os.PathLike[str]) -> list[Path]:
    """The primary private keys present in `directory`."""
    folder = Path(directory)
    return [folder / name for name in PRIMARY if (folder / name).exists()]


def private_key_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Every private host key file in `directory`, served or kept (next, retired, replaced)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("ssh_host_*") if p.is_file() and ".pub" not in p.name)


def load(directory: str | os.PathLike[str]) -> list[asyncssh.SSHKey]:
    folder = Path(directory)
    # Primary keys first: asyncssh proves the server with the first key of each type and only
    # announces the others.
    paths = sorted(folder.glob("ssh_host_*_key"),
                   key=lambda p: (PRIMARY.index(p.name) if p.name in PRIMARY else len(PRIMARY), p.name))
    if not paths:
        raise ConfigError(user_texts.no_host_keys(folder))
    keys = []
    for path in paths:
        try:
            keys.append(asyncssh.read_private_key(str(path)))
        except (asyncssh.KeyImportError, OSError) as exc:
            raise ConfigError(user_texts.unreadable_host_key(path, exc)) from None
    return keys


def fingerprints(directory: str | os.PathLike[str]) -> list[str]:
    return [f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" for key in load(directory)]


def promote(directory: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Make each `*_next_key` the primary key of its type; the old primary becomes `*.retired`.

    Returns the (from, to) renames done. Run it on the shared folder once clients have had time to
    learn the next keys, then reload the replicas (SIGHUP).
    """
    folder = Path(directory)
    moves: list[tuple[Path, Path]] = []
    for filename in PRIMARY:
        upcoming = folder / next_name(filename)
        if not upcoming.exists():
            continue
        current = folder / filename
        for suffix in ("", ".pub"):
            old = Path(str(current) + suffix)
            if old.exists():
                retired = Path(str(old) + ".retired")
                old.replace(retired)
                moves.append((old, retired))
        for suffix in ("", ".pub"):
            new = Path(str(upcoming) + suffix)
            if new.exists():
                target = Path(str(current) + suffix)
                new.replace(target)
                moves.append((new, target))
    return moves

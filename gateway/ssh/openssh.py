"""OpenSSH deployment mode: sshd does SSH, the registry decides which keys may log in.

sshd_config:

    Match User submit
        AuthorizedKeysFile none
        AuthorizedKeysCommand /usr/local/bin/pypissh-gateway --config /etc/pypissh/config.toml authorized-keys-command %u %k %t
        AuthorizedKeysCommandUser pypissh

For the key a client presents, `authorized-keys-command` prints one authorized_keys line, with a
forced command that runs `pypissh-gateway stdio` as that key's account:

    restrict,command="/usr/local/bin/pypissh-gateway --config ... stdio --account alice --fingerprint SHA256:..." ssh-ed25519 AAAA...

and nothing for an unknown or revoked key, a disabled account, or another user than `ssh_user`.
sshd asks on every login, so a revocation takes effect at once (no cache in this mode).
"""

from __future__ import annotations

import base64
import binascii
import shlex
import struct
from typing import Sequence

from gateway.registry import Identity, Registry
from gateway.ssh.sshkeys import KeyFormatError, PublicKey, parse_public_key


def forced_command(executable: str, global_args: Sequence[str], identity: Identity) -> str:
    """The command sshd runs for this key: `stdio` as its account, naming the key for the record."""
    argv = [executable, *global_args, "stdio", "--account", identity.account_name,
            "--fingerprint", identity.fingerprint]
    return shlex.join(argv)


def authorized_keys_line(command: str, key: PublicKey) -> str:
    # `restrict` turns off forwarding, pty, X11 and user rc; in sshd's option syntax only `\"`
    # is an escape inside a quoted value.
    return f'restrict,command="{command.replace(chr(34), chr(92) + chr(34))}" {key.openssh}'


def presented_key(key_base64: str, key_type: str | None) -> PublicKey | None:
    """The key sshd passed (%k, and %t when given), or None if it is not a plain public key."""
    try:
        blob = base64.b64decode(key_base64, validate=True)
        (size,) = struct.unpack(">I", blob[:4])
        blob_type = blob[4:4 + size].decode("ascii")
        key = parse_public_key(f"{blob_type} {key_base64}")
    except (binascii.Error, struct.error, UnicodeDecodeError, KeyFormatError):
        return None
    # The blob names its own type; a %t that disagrees (a certificate, say) is not ours to accept.
    if key_type and key_type != blob_type:
        return None
    return key


def lines_for(registry: Registry, ssh_user: str, user: str, key_base64: str, key_type: str | None,
              executable: str, global_args: Sequence[str]) -> list[str]:
    """The authorized_keys lines for one login attempt (empty: sshd refuses the key)."""
    if user != ssh_user:
        return []
    key = presented_key(key_base64, key_type)
    if key is None:
        return []
    identity = registry.accounts.identity_for_key(key.fingerprint)
    if identity is None:
        return []
    return [authorized_keys_line(forced_command(executable, global_args, identity), key)]

r"""The OpenSSH mode's authorized_keys lines: the one builder (for `authorized_keys_file`) and
`pypissh-gateway authorized-keys-command`, which prints the lines of that file for one key.

The replica keeps `authorized_keys_file` (gateway/ssh/keyfile.py) and sshd's AuthorizedKeysCommand
picks a key's line out of it, with `grep -F` or, for an operator who prefers a named command, with
(one line in sshd_config, shown wrapped here)

    AuthorizedKeysCommand /opt/pypissh/bin/pypissh-gateway --config /etc/pypissh/config.toml \
        authorized-keys-command %u %k %t

which prints the same line (the file's own) for an active key of an enabled account given as
`ssh_user`, and nothing otherwise. It reads the file rather than the registry: what it prints is
then what sshd gets from grep, byte for byte, and neither sshd's AuthorizedKeysCommandUser nor this
process needs the registry's credentials. Standard library only, and no more of it than needed:
tests/test_fast_paths.py checks the imports.
"""

from __future__ import annotations

import binascii
import re

from gateway.registry import names


def key_blob(key_base64: str, key_type: str | None) -> bytes | None:
    """The key sshd passed (%k), if it is a well-formed blob of the type %t names (when given).

    The blob is not parsed further: only a registered key's fingerprint finds an account, and keys
    are parsed when they are registered. The line names the key exactly as sshd passed it (the
    base64 of the blob the client offered), which is what sshd compares it with.
    """
    try:
        blob = binascii.a2b_base64(key_base64.encode("ascii"), strict_mode=True)
        size = int.from_bytes(blob[:4], "big")
        blob_type = blob[4:4 + size].decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    if len(blob) < 4 or not blob_type or len(blob) < 4 + size:
        return None
    # The blob names its own type; a %t that disagrees (a certificate, say) is not ours to accept.
    if key_type and key_type != blob_type:
        return None
    return blob


# Every line this package writes starts so: `restrict` turns off forwarding, pty, X11 and user rc,
# and the forced command is the only thing sshd will run for the key.
LINE_PREFIX = 'restrict,command="'
# Characters no line may hold anywhere: each ends the line, or the C string sshd reads it into.
LINE_BREAKERS = ("\n", "\r", "\0")
# The bare key (no options, no comment) and an OpenSSH SHA256 fingerprint.
_PUBLIC_KEY = re.compile(r"[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,3}")
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{1,64}={0,3}")


class UnsafeLine(ValueError):
    """A part of an authorized_keys line (an account name from the registry, say) could change
    what the line means; the line is not written and the key gets no access."""


def check_account(account: str) -> str:
    """`account` if it follows the account-name grammar, else UnsafeLine."""
    if not names.is_account_name(account):
        raise UnsafeLine(names.refusal(account))
    return account


def check_fingerprint(fingerprint: str) -> str:
    if _FINGERPRINT.fullmatch(fingerprint) is None:
        raise UnsafeLine(f"fingerprint {ascii(fingerprint)[:80]} is not an OpenSSH SHA256 fingerprint")
    return fingerprint


def check_public_key(key_openssh: str) -> str:
    """`<type> <base64>` and nothing else: a comment or options have no place in a built line."""
    if _PUBLIC_KEY.fullmatch(key_openssh) is None:
        raise UnsafeLine(f"public key {ascii(key_openssh)[:60]}... is not '<type> <base64>'")
    return key_openssh


def authorized_keys_line(command: str, key_openssh: str) -> str:
    """The one builder of lines: the fixed prefix, the command, the bare key. Raises UnsafeLine
    rather than return a line that does not start with LINE_PREFIX or that holds a line break."""
    # In sshd's option syntax only `\"` is an escape inside a quoted value.
    line = f'{LINE_PREFIX}{command.replace(chr(34), chr(92) + chr(34))}" {check_public_key(key_openssh)}'
    if not line.startswith(LINE_PREFIX) or any(char in line for char in LINE_BREAKERS):
        raise UnsafeLine("the line would hold a line break or lose its forced command")
    return line


def lines_for_key(key_file: str, user: str, ssh_user: str, key_base64: str, key_type: str | None) -> list[str]:
    """The lines of `key_file` for the key sshd presents (%u %k %t); empty: sshd refuses the key.
    Raises OSError when the file cannot be read."""
    blob = key_blob(key_base64, key_type) if user == ssh_user else None
    if blob is None:
        return []
    key = f" {blob[4:4 + int.from_bytes(blob[:4], 'big')].decode('ascii')} {key_base64}\n"
    with open(key_file, encoding="utf-8") as lines:
        return [line[:-1] for line in lines if line.startswith(LINE_PREFIX) and line.endswith(key)]

"""`pypissh-gateway authorized-keys-command`: sshd's AuthorizedKeysCommand, at the cost of about
one interpreter start.

    Match User submit
        AuthorizedKeysFile none
        AuthorizedKeysCommand /opt/pypissh/bin/pypissh-gateway --config /etc/pypissh/config.toml authorized-keys-command %u %k %t
        AuthorizedKeysCommandUser pypissh

sshd runs it twice per login (the key query, then the signed attempt) with the user (%u), the key
(%k) and its type (%t). For an active key of an enabled account it prints one authorized_keys
line whose forced command runs `stdio` as that account:

    restrict,command="/opt/pypissh/bin/pypissh-gateway --config /etc/pypissh/config.toml stdio --account alice --fingerprint SHA256:..." ssh-ed25519 AAAA...

and nothing for another user than `ssh_user`, an unknown or revoked key, or a disabled account.

Who owns the key is asked of the local replica over `shim_socket` (it answers from its key cache,
so a revocation reaches sshd within `key_cache_seconds`, as with the replica's own SSH server);
when no replica answers, the registry is read directly (`gateway.registry.keyline`). Standard
library only, and no more of it than needed: tests/test_fast_paths.py checks the imports.
"""

from __future__ import annotations

import binascii
import re
import shlex
import socket

from gateway.registry import names
from gateway.ssh import shimwire

TYPE_CHECKING = False  # `typing` is for type checkers only here (see gateway/loginsettings.py)
if TYPE_CHECKING:
    from typing import Sequence

# The replica answers from memory; a slower answer means it is stuck, and the registry is there.
LOOKUP_TIMEOUT = 2.0


class LookupFailed(Exception):
    """Neither the replica nor the registry could say who owns the key (sshd logs the reason)."""


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


def blob_type(blob: bytes) -> str:
    return blob[4:4 + int.from_bytes(blob[:4], "big")].decode("ascii")


def fingerprint_of(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a key blob."""
    import hashlib

    digest = binascii.b2a_base64(hashlib.sha256(blob).digest(), newline=False).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


# Every line this package writes starts so: `restrict` turns off forwarding, pty, X11 and user rc,
# and the forced command is the only thing sshd will run for the key.
LINE_PREFIX = 'restrict,command="'
# Characters no line may hold anywhere: each ends the line, or the C string sshd reads it into.
LINE_BREAKERS = ("\n", "\r", "\0")
# The bare key (no options, no comment) and an OpenSSH SHA256 fingerprint. `re` costs nothing
# more here: shlex imports it.
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


def forced_command(executable: str, global_args: Sequence[str], account: str, fingerprint: str) -> str:
    """The command sshd runs for this key: `stdio` as its account, naming the key for the record."""
    return shlex.join([executable, *global_args, "stdio", "--account", check_account(account),
                       "--fingerprint", check_fingerprint(fingerprint)])


def authorized_keys_line(command: str, key_openssh: str) -> str:
    """The one builder of lines: the fixed prefix, the command, the bare key. Raises UnsafeLine
    rather than return a line that does not start with LINE_PREFIX or that holds a line break."""
    # In sshd's option syntax only `\"` is an escape inside a quoted value.
    line = f'{LINE_PREFIX}{command.replace(chr(34), chr(92) + chr(34))}" {check_public_key(key_openssh)}'
    if not line.startswith(LINE_PREFIX) or any(char in line for char in LINE_BREAKERS):
        raise UnsafeLine("the line would hold a line break or lose its forced command")
    return line


def ask_replica(socket_path: str, key_base64: str, timeout: float = LOOKUP_TIMEOUT
                ) -> tuple[bool, tuple[str, str] | None]:
    """(True, (account, fingerprint) or None) when the replica on `socket_path` answered, else
    (False, None)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(shimwire.frame(shimwire.LOOKUP, key_base64.encode("ascii")))
            buffer = shimwire.FrameBuffer()
            while True:
                data = sock.recv(4096)
                if not data:
                    return False, None
                for kind, payload in buffer.feed(data):
                    if kind != shimwire.ACCOUNT:
                        return False, None  # UNAVAILABLE, or a refusal: the registry decides
                    if not payload:
                        return True, None
                    account, _, fingerprint = payload.decode("utf-8").partition("\0")
                    return True, (account, fingerprint)
    except (OSError, shimwire.WireError, UnicodeError):
        return False, None


def owner(key_base64: str, blob: bytes, socket_path: str, database_url: str) -> tuple[str, str] | None:
    """(account, fingerprint) of the active key: the replica's answer, else the registry's."""
    answered, found = ask_replica(socket_path, key_base64)
    if answered:
        return found
    from gateway.registry.keyline import KeylineError, account_for_key

    fingerprint = fingerprint_of(blob)
    try:
        account = account_for_key(database_url, fingerprint)
    except KeylineError as exc:
        raise LookupFailed(str(exc)) from None
    return (account, fingerprint) if account else None


class KeyQuery:
    """One run of the command: sshd's arguments and what the forced command must carry."""

    __slots__ = ("user", "key_base64", "key_type", "executable", "global_args")

    def __init__(self, user: str, key_base64: str, key_type: str | None, executable: str,
                 global_args: Sequence[str]):
        self.user = user
        self.key_base64 = key_base64
        self.key_type = key_type
        self.executable = executable  # absolute path of the program the forced command runs
        self.global_args = tuple(global_args)  # --config FILE and --set pairs, passed on to `stdio`


def lines_for_query(query: KeyQuery, ssh_user: str, socket_path: str, database_url: str) -> list[str]:
    """The authorized_keys lines for one login attempt (empty: sshd refuses the key). Raises
    LookupFailed when the owner cannot be found out, UnsafeLine when what the registry says
    cannot be written into a safe line."""
    if query.user != ssh_user:
        return []
    blob = key_blob(query.key_base64, query.key_type)
    if blob is None:
        return []
    found = owner(query.key_base64, blob, socket_path, database_url)
    if found is None:
        return []
    account, fingerprint = found
    # A registry row that breaks the grammar (written by hand, or before it was enforced) raises
    # UnsafeLine here: the caller prints no line, and sshd refuses the key.
    command = forced_command(query.executable, query.global_args, account, fingerprint)
    return [authorized_keys_line(command, f"{blob_type(blob)} {query.key_base64}")]

"""`pypissh-gateway stdio` in process (`stdio_in_process = true`): one session on stdin/stdout,
run by the forced command's own process, for an OpenSSH machine that runs no replica.

sshd authenticates the key (through `authorized-keys-command`, which names the account and the
key's fingerprint in the forced command) and runs this once per session. A command the user typed
arrives in SSH_ORIGINAL_COMMAND (`help`, `whoami`, `guide`); otherwise stdin carries one legacy
HTTP request. Both run through `gateway.ssh.commands`, exactly as in the asyncssh server. Every
session imports and builds the whole gateway, about a second; by default `stdio` is instead the
thin shim of gateway/ssh/shim.py, and the replica runs the session (gateway/ssh/shimserver.py,
which also uses `find_identity` from here).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Mapping

from gateway import messages
from gateway.ops import sessionlog
from gateway.registry import Identity, Registry
from gateway.services import Services
from gateway.settings import Settings
from gateway.ssh.commands import run_command, run_exchange
from gateway.upload.exchange import Peer


class StdinSource:
    """stdin for `Exchange`, each read in a daemon thread: a read still blocked when the exchange
    gives up (a silent client) must not keep the process from answering and exiting."""

    def __init__(self, fd: int):
        self._fd = fd

    async def read(self, max_bytes: int) -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()

        def deliver(data: bytes) -> None:
            if not done.done():
                done.set_result(data)

        def work() -> None:
            try:
                data = os.read(self._fd, max_bytes)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(deliver, data)
            except RuntimeError:  # the loop is gone: the exchange ended without this read
                pass

        threading.Thread(target=work, name="pypissh-stdin", daemon=True).start()
        return await done


def find_identity(registry: Registry, account: str, fingerprint: str | None) -> Identity | None:
    """The login's identity: the named key if it is still active and the account's, else None."""
    if fingerprint:
        found = registry.accounts.identity_for_key(fingerprint)
        return found if found and found.account_name == account else None
    keys = registry.accounts.list_keys(account, include_revoked=False)
    return registry.accounts.identity_for_key(keys[0].fingerprint) if keys else None


def client_address(environ: Mapping[str, str]) -> str | None:
    """The client's address from sshd's SSH_CONNECTION ("client port server port")."""
    parts = (environ.get("SSH_CONNECTION") or "").split()
    return parts[0] if parts else None


async def _session(services: Services, identity: Identity, command: str) -> int:
    started = time.monotonic()
    done = sessionlog.FAILED
    try:
        status, done = await _run(services, identity, command)
        return status
    finally:
        services.sessionlog.session(client_addr=client_address(os.environ), identity=identity, outcome=done,
                                    started=started)


async def _run(services: Services, identity: Identity, command: str) -> tuple[int, sessionlog.SessionOutcome]:
    """The session's exit status, and what it did (for its log line)."""
    out = sys.stdout.buffer
    if command:
        started = time.monotonic()
        result = await run_command(command, identity, services)
        out.write(result.stdout.encode())
        out.flush()
        sys.stderr.write(result.stderr)
        sys.stderr.flush()
        return result.status, sessionlog.SessionOutcome.of_command(command, result.status, started, time.monotonic())
    peer = Peer(identity=identity, client_addr=client_address(os.environ))
    answer = await run_exchange(StdinSource(sys.stdin.fileno()), peer, services)
    sys.stderr.write(answer.stderr)
    sys.stderr.flush()
    out.write(answer.stdout)
    out.flush()
    return answer.status, sessionlog.SessionOutcome.of_exchange(answer.event) if answer.event else sessionlog.FAILED


def run_stdio(settings: Settings, account: str, fingerprint: str | None) -> int:
    services = Services.build(settings)
    try:
        try:
            identity = find_identity(services.registry, account, fingerprint)
        except Exception:
            _refused(services, fingerprint, sessionlog.REGISTRY_UNAVAILABLE)
            sys.stderr.write(messages.registry_unavailable_line())
            return 1
        if identity is None:
            _refused(services, fingerprint, sessionlog.KEY_NOT_ACTIVE)
            sys.stderr.write(messages.no_active_key(account, fingerprint))
            return 1
        command = (os.environ.get("SSH_ORIGINAL_COMMAND") or "").strip()
        return asyncio.run(_session(services, identity, command))
    finally:
        services.close()


def _refused(services: Services, fingerprint: str | None, reason: str) -> None:
    """sshd let the key in, but it is no longer active (or cannot be checked): a refused login."""
    services.sessionlog.refused(client_addr=client_address(os.environ), username=services.settings.ssh_user,
                                key_fingerprint=fingerprint, reason=reason)

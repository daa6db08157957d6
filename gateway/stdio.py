"""`pypissh-gateway stdio`: one exchange on stdin/stdout, for an OpenSSH `command=` deployment.

sshd authenticates the key (through `authorized-keys-command`) and runs this once per session with
the account it names; everything after that is the same `Exchange` the asyncssh server runs.
"""

from __future__ import annotations

import asyncio
import os
import sys

from gateway import messages
from gateway.app import Gateway
from gateway.exchange import Exchange, Peer
from gateway.registry import Identity, Registry
from gateway.settings import Settings


class StdinSource:
    def __init__(self, fd: int):
        self._fd = fd

    async def read(self, max_bytes: int) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, os.read, self._fd, max_bytes)


def _identity(registry: Registry, account: str, fingerprint: str | None) -> Identity | None:
    if fingerprint:
        found = registry.identity_for_key(fingerprint)
        return found if found and found.account_name == account else None
    keys = [k for k in registry.list_keys(account, include_revoked=False)]
    return registry.identity_for_key(keys[0].fingerprint) if keys else None


def run_stdio(settings: Settings, account: str, fingerprint: str | None) -> int:
    gateway = Gateway.build(settings)
    try:
        identity = _identity(gateway.registry, account, fingerprint)
        if identity is None:
            sys.stderr.write(f"pypissh-gateway: account '{account}' has no active key here; ask the admins\n")
            return 1
        place = messages.Place.from_settings(settings)
        sys.stderr.write(messages.session_notice(identity.account_name, identity.fingerprint, place))
        sys.stderr.flush()
        client = (os.environ.get("SSH_CONNECTION") or "").split()
        peer = Peer(identity=identity, client_addr=client[0] if client else None,
                    ssh_client_version=None)
        reply = asyncio.run(Exchange(StdinSource(sys.stdin.fileno()), peer, gateway).run())
        out = sys.stdout.buffer
        out.write(reply.to_bytes())
        out.flush()
        return reply.exit_status
    finally:
        gateway.close()

"""Run `pypissh-gateway` with some of the profiling fixes undone, for bench/before_after.py.

    python bench/_before.py UNDO[,UNDO...] [pypissh-gateway arguments...]

UNDO names (see bench/RESULTS.md for what each fix was):
  chacha      offer chacha20-poly1305@openssh.com again (OpenSSH clients pick it first)
  quickack    no immediate ACK after each read (the 40 ms delayed-ACK stall at login returns)
  reload      asyncssh rebuilds its options at every login again
  pause       back-pressure by pausing the channel (asyncssh keeps granting window) instead of
              the socket
  keyhop      every key lookup goes through the thread pool, cache hits too
  statements  the registry builds the upload-event and key-lookup statements anew for every call
  all         all of the above
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

UNDOS = ("chacha", "quickack", "reload", "pause", "keyhop", "statements")


def undo(names: set[str]) -> None:
    import asyncssh

    from gateway import keycache
    from gateway.ssh import algorithms, asyncssh_seams, session

    if "chacha" in names:
        algorithms.MODERN_CIPHERS = ("chacha20-poly1305@openssh.com", *algorithms.MODERN_CIPHERS)
    if "quickack" in names:
        asyncssh_seams.QUICKACK = None
    if "reload" in names:
        asyncssh_seams.ServerConnection.reload_config = asyncssh.SSHServerConnection.reload_config
    if "pause" in names:
        original = session.ChannelReader.__init__

        def channel_paused(self, chan, conn=None):
            original(self, chan, None)

        session.ChannelReader.__init__ = channel_paused
    if "keyhop" in names:
        keycache.KeyCache.cached = lambda self, fingerprint: (False, None)
    if "statements" in names:
        _statements_per_call()


def _statements_per_call() -> None:
    """The registry's upload-event and key-lookup code as it was before (statements per call)."""
    from dataclasses import asdict

    from sqlalchemy import insert, select, update

    from gateway.registry import keys as account_store
    from gateway.registry import events as event_store
    from gateway.registry.schema import accounts, ssh_keys, upload_events

    def record_event(self, event_):
        with self.engine.begin() as conn:
            conn.execute(insert(upload_events).values(**asdict(event_)))
            if event_.key_fingerprint and event_.account_id is not None:
                conn.execute(update(ssh_keys).where(ssh_keys.c.fingerprint == event_.key_fingerprint)
                             .values(last_used_at=event_.at))

    def identity_for_key(self, fingerprint):
        query = (
            select(accounts.c.id, accounts.c.name, accounts.c.email, accounts.c.exempt,
                   accounts.c.token_ciphertext, ssh_keys.c.fingerprint, ssh_keys.c.comment,
                   ssh_keys.c.allowed_projects)
            .join(accounts, accounts.c.id == ssh_keys.c.account_id)
            .where(ssh_keys.c.fingerprint == fingerprint, ssh_keys.c.revoked_at.is_(None),
                   accounts.c.disabled.is_(False)))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return account_store.Identity(
            account_id=row.id, account_name=row.name, email=row.email, exempt=row.exempt,
            fingerprint=row.fingerprint, key_comment=row.comment, token_ciphertext=row.token_ciphertext,
            allowed_projects=account_store._projects(row.allowed_projects))

    event_store.EventStore.record = record_event
    account_store.KeyStore.identity_for_key = identity_for_key


def main() -> None:
    names = set(sys.argv[1].split(",")) - {"", "none"}
    if "all" in names:
        names = set(UNDOS)
    unknown = names - set(UNDOS)
    if unknown:
        raise SystemExit(f"unknown: {', '.join(sorted(unknown))}; choose from {', '.join(UNDOS)}")
    undo(names)
    from gateway.cli import main as gateway_main

    sys.argv = ["pypissh-gateway", *sys.argv[2:]]
    gateway_main()


if __name__ == "__main__":
    main()

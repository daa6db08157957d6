"""Revocation that reaches connections already logged in.

A key is checked when it logs in, but an SSH connection can stay open for hours (an OpenSSH
ControlMaster carries session after session over one login). So every `key_cache_seconds` each
replica looks up, again, the keys of all its logged-in connections: one registry query for all of
them (`KeyCache.refresh`, which also keeps their cache entries fresh for the next login), never a
query per connection. A connection whose key is revoked, or whose account is disabled, is refused
its next session and closed once it has none (`GatewayServer.revoke`).

Between two checks, every new session looks its identity up again (through the key cache, so at
most `key_cache_seconds` old) before it runs, and an upload does so once more before it is
forwarded: an upload already being forwarded when the revocation arrives is the only one that
can still be published.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.errors import RegistryDown
from gateway.keycache import owned_by
from gateway.services import Services
from gateway.settings import Settings

log = logging.getLogger(__name__)

# With the key cache off (key_cache_seconds = 0) the open connections are still checked this often.
UNCACHED_PERIOD = 1.0
# Checking more often than this would only load the registry.
MIN_PERIOD = 0.1


def check_period(settings: Settings) -> float:
    """Seconds between two checks of the logged-in connections."""
    if settings.key_cache_seconds <= 0:
        return UNCACHED_PERIOD
    return max(MIN_PERIOD, settings.key_cache_seconds)


async def recheck_logins(services: Services) -> int:
    """Look up the keys of every logged-in connection once; revoke the connections whose key or
    account is no longer active. Returns how many were revoked."""
    connections = services.limits.connections
    fingerprints = connections.fingerprints()
    if not fingerprints:
        return 0
    try:
        current = await services.run_registry(services.keys.refresh, fingerprints)
    except RegistryDown:
        return 0  # logged by the key cache; open connections stay until the registry answers
    revoked = 0
    for conn, login in connections.logins():
        # A connection that logged in while the query ran has a key the query did not ask about:
        # its login was checked just now, and the next check covers it.
        if login.fingerprint not in current:
            continue
        if owned_by(current[login.fingerprint], login.account) is None:
            conn.revoke()
            revoked += 1
    return revoked


async def watch_logins(services: Services) -> None:
    """Run `recheck_logins` every `check_period` until cancelled."""
    period = check_period(services.settings)
    while True:
        await asyncio.sleep(period)
        try:
            await recheck_logins(services)
        except Exception:  # the watch must outlive any one failure
            log.exception("could not check the logged-in connections' keys")

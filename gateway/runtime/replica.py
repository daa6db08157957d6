"""One replica process: the SSH listener, the health endpoints, and a graceful drain on SIGTERM.

Drain, in order: readiness fails at once (the balancer stops choosing us), the listening socket is
closed (new connections are refused, and HAProxy's `redispatch` sends them to another replica),
connections in flight get `drain_seconds` to finish, whatever is left is told to reconnect, and
the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable
from typing import TypeVar

from gateway import setting_texts
from gateway.errors import ConfigError
from gateway.ops import metrics
from gateway.runtime import hangup
from gateway.runtime.health import DatabaseProbe, HealthServer, ReplicaState, readiness_check
from gateway.services import Services
from gateway.settings import Settings
from gateway.ssh.keyfile import KeyFileWriter, check_writable
from gateway.ssh.server import start_server
from gateway.ssh.shimserver import ShimServer, bind_shim_socket, inherited_shim_socket

log = logging.getLogger("gateway")
T = TypeVar("T")

# How often a worker checks that its supervisor is still alive (a SIGKILLed supervisor cannot
# tell its workers to stop; they drain on their own instead of serving unsupervised forever).
PARENT_CHECK_SECONDS = 1.0
# How often the summaries of refused-login floods that are due get written.
LOG_FLUSH_SECONDS = 10.0


async def run_replica(settings: Settings, *, serve_health: bool = True, supervised: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    if settings.openssh_mode and settings.authorized_keys_file and not supervised:
        check_writable(settings.authorized_keys_file)
    services = Services.build(settings)
    state = ReplicaState()
    probe = DatabaseProbe(services.registry.ping)
    health: HealthServer | None = None
    server = None
    shim: ShimServer | None = None
    flushing = asyncio.get_running_loop().create_task(_flush_log(services))
    listening: list = []  # the SSH server, once it listens (SIGHUP gives it the host keys again)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _hangup, services, listening)
    keyfile: asyncio.Task | None = None
    try:
        server = await _listening("listen", settings.listen, start_server(services))
        listening.append(server)
        if settings.openssh_mode:
            shim = await _shim_server(services, supervised)
            if settings.authorized_keys_file and not supervised:  # under a supervisor, it writes the file
                keyfile = asyncio.get_running_loop().create_task(KeyFileWriter(settings, services.registry).run())
        metrics.LISTENING.set(1)
        metrics.publish_build_info()
        if serve_health:
            health = await _listening("health_listen", settings.health_listen, HealthServer(
                settings.health_host, settings.health_port,
                readiness_check(state, probe, saturation=services.saturation)).start())
        log.info("replica %s listening on %s for user %s (proxy_protocol %s), health on %s, forwarding to %s",
                 services.replica, settings.listen, settings.ssh_user, settings.proxy_protocol,
                 f"{settings.health_host}:{health.port}" if health else "the supervisor",
                 settings.upstream_url)
        await _stopped(supervised)
        state.draining = True
        server.close()
        if shim is not None:
            shim.close()
        metrics.LISTENING.set(0)
        log.info("draining: %d connections in flight, waiting up to %.0f s", server.in_flight
                 + (shim.in_flight if shim else 0), settings.drain_seconds)
        cuts = await asyncio.gather(server.drain(settings.drain_seconds),
                                    shim.drain(settings.drain_seconds) if shim else asyncio.sleep(0, 0))
        cut = sum(cuts)
        if cut:
            log.warning("drain time is up: told %d connections to reconnect", cut)
        else:
            log.info("drained")
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        flushing.cancel()
        if keyfile is not None:
            keyfile.cancel()
        services.sessionlog.flush(everything=True)
        if server is not None:
            server.close()
        if shim is not None:
            shim.close()
        if health is not None:
            health.close()
            await health.wait_closed()
        probe.close()
        services.close()


async def _shim_server(services: Services, supervised: bool) -> ShimServer:
    """shim_socket for the OpenSSH mode: the supervisor's (inherited) under `serve --workers N`,
    else bound here."""
    inherited = inherited_shim_socket(os.environ) if supervised else None
    sock = inherited or bind_shim_socket(services.settings)
    shim = await ShimServer(services, sock, owns_path=inherited is None).start()
    log.info("serving the OpenSSH mode's sessions of user %s on %s", services.settings.shim_user,
             services.settings.shim_socket)
    return shim


def _hangup(services: Services, listening: list) -> None:
    """SIGHUP: reopen log_file, read the secret keys and the host keys again (gateway/runtime/hangup.py)."""
    hangup.reopen_log()
    hangup.reload_secret_keys(services.settings, services.tokens)
    for server in listening:
        task = asyncio.get_running_loop().create_task(hangup.reload_host_keys(services, server))
        _HANGUPS.add(task)
        task.add_done_callback(_HANGUPS.discard)


_HANGUPS: set[asyncio.Task] = set()  # reloads under way (the loop keeps only weak references)


async def _flush_log(services: Services) -> None:
    """Write the refused-login flood summaries that fall due when no new refusal comes."""
    while True:
        await asyncio.sleep(LOG_FLUSH_SECONDS)
        services.sessionlog.flush()


async def _listening(setting: str, address: str, starting: Awaitable[T]) -> T:
    try:
        return await starting
    except OSError as exc:
        raise ConfigError(setting_texts.cannot_listen(setting, address, exc.strerror or exc)) from None


async def _stopped(supervised: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not supervised:
        await stop.wait()
        return
    parent = os.getppid()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
        except TimeoutError:
            if os.getppid() != parent:
                log.warning("the supervisor is gone; draining")
                return

"""`serve --workers N`: N worker processes sharing the SSH port, kept running by a supervisor.

One event loop uses one core and SSH handshakes are CPU-bound, so a machine scales with processes.
Each worker binds the port itself with SO_REUSEPORT and the kernel spreads new connections over
them. The supervisor:

- holds the port (bound, not listening, so it receives no connections) so that `listen` may say
  port 0 and a restarted worker gets the same port back;
- restarts a worker that dies, with a growing pause if it keeps dying at once;
- serves `health_listen` for the whole machine: `/readyz` (database answers, not draining, a
  worker is up, no worker's thread pool saturated) and `/metrics`, the sum of all workers' metrics
  (prometheus-client's multiprocess mode, in a private directory);
- binds `shim_socket` in the OpenSSH mode (a UNIX socket cannot be shared like the port), and
  every worker accepts on the one it inherits;
- on SIGTERM or SIGINT fails readiness, passes SIGTERM to every worker (each drains its own
  connections within `drain_seconds`) and exits once all are gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable

from gateway import setting_texts
from gateway.errors import ConfigError
from gateway.ops import metrics
from gateway.registry import Registry
from gateway.runtime import hangup
from gateway.runtime.health import DatabaseProbe, HealthServer, Readiness, ReplicaState, readiness_check
from gateway.settings import Settings
from gateway.ssh import shimserver
from gateway.ssh.keyfile import KeyFileWriter, check_writable

log = logging.getLogger("gateway.supervisor")

# A worker that dies sooner than this after starting is crash-looping: wait longer each time.
STABLE_SECONDS = 10.0
MAX_BACKOFF = 30.0
# Workers drain within drain_seconds; after that (plus this) they are killed.
EXIT_GRACE = 10.0


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (but do not listen on) the port with SO_REUSEPORT: workers can join it, and it stays ours."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Supervisor:
    def __init__(self, settings: Settings, worker_command: Callable[[int, str], list[str]], workers: int):
        """`worker_command(index, listen)` is the argv that runs worker `index` on `listen`."""
        self.settings = settings
        self.worker_command = worker_command
        self.workers = workers
        self.state = ReplicaState()
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._metrics_dir = ""
        self._shim: socket.socket | None = None

    async def run(self) -> int:
        settings = self.settings
        if settings.openssh_mode and settings.authorized_keys_file:
            check_writable(settings.authorized_keys_file)
        try:
            port_holder = reserve_port(settings.listen_host, settings.listen_port)
        except OSError as exc:
            raise ConfigError(setting_texts.cannot_listen("listen", settings.listen, exc.strerror or exc)) from None
        listen = host_port(settings.listen_host, port_holder.getsockname()[1])
        if settings.openssh_mode:
            try:
                self._shim = shimserver.bind_shim_socket(settings)
            except ConfigError:
                port_holder.close()
                raise
        shim_inode = os.lstat(settings.shim_socket).st_ino if self._shim else None
        self._metrics_dir = tempfile.mkdtemp(prefix="pypissh-metrics-")
        registry = Registry.from_url(settings.database_url)
        probe = DatabaseProbe(registry.ping)
        try:
            health = await HealthServer(settings.health_host, settings.health_port, self._readiness(probe),
                                        metrics_dir=self._metrics_dir).start()
        except OSError as exc:
            port_holder.close()
            if self._shim is not None:
                self._shim.close()
                shimserver.remove_socket_file(settings.shim_socket, shim_inode)
            raise ConfigError(setting_texts.cannot_listen("health_listen", settings.health_listen,
                                                     exc.strerror or exc)) from None
        log.info("supervising %d workers on %s, health on %s:%d", self.workers, listen,
                 settings.health_host, health.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        slots = [loop.create_task(self._keep_running(index, listen)) for index in range(self.workers)]
        keyfile = (loop.create_task(KeyFileWriter(settings, registry).run())  # one writer for all workers
                   if settings.openssh_mode and settings.authorized_keys_file else None)
        try:
            await stop.wait()
            if keyfile is not None:
                keyfile.cancel()
            log.info("stopping: workers drain for up to %.0f s", settings.drain_seconds)
            self._stopping = True
            self.state.draining = True
            shimserver.remove_socket_file(settings.shim_socket, shim_inode)
            for proc in list(self.processes.values()):
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            _, pending = await asyncio.wait(slots, timeout=settings.drain_seconds + EXIT_GRACE)
            for proc in list(self.processes.values()):
                if proc.returncode is None:
                    log.warning("worker %d did not exit in time; killing it", proc.pid)
                    proc.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)
        finally:
            for slot in slots:
                slot.cancel()
            if keyfile is not None:
                keyfile.cancel()
            health.close()
            await health.wait_closed()
            probe.close()
            registry.close()
            port_holder.close()
            if self._shim is not None:
                self._shim.close()
                shimserver.remove_socket_file(settings.shim_socket, shim_inode)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        log.info("all workers stopped")
        return 0

    def _readiness(self, probe: DatabaseProbe) -> Callable[[], Awaitable[Readiness]]:
        database = readiness_check(self.state, probe, saturation=self._saturation)

        async def check() -> Readiness:
            if not self.state.draining and metrics.listening_processes(self._metrics_dir) < 1:
                return Readiness(False, "no worker is accepting connections yet")
            return await database()

        return check

    def _saturation(self) -> str | None:
        # The kernel spreads connections over every worker, so one saturated worker is enough.
        pools = metrics.saturated_pools(self._metrics_dir)
        return f"a worker's {' and '.join(pools)} pool is saturated" if pools else None

    def _hangup(self) -> None:
        """SIGHUP: reopen the supervisor's log_file and pass the signal on, so that each worker
        reopens its own and reads the secret keys again (gateway/runtime/hangup.py)."""
        hangup.reopen_log()
        for proc in list(self.processes.values()):
            if proc.returncode is None:
                proc.send_signal(signal.SIGHUP)

    async def _keep_running(self, index: int, listen: str) -> None:
        backoff = 0.5
        env = dict(os.environ, **{metrics.MULTIPROC_ENV: self._metrics_dir})
        inherited: tuple[int, ...] = ()
        if self._shim is not None:
            inherited = (self._shim.fileno(),)
            env[shimserver.INHERITED_FD_ENV] = str(self._shim.fileno())
        while not self._stopping:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*self.worker_command(index, listen), env=env,
                                                        pass_fds=inherited)
            self.processes[index] = proc
            status = await proc.wait()
            metrics.worker_exited(self._metrics_dir, proc.pid)
            if self._stopping:
                log.info("worker %d (pid %d) stopped with status %s", index, proc.pid, status)
                return
            lived = time.monotonic() - started
            backoff = 0.5 if lived >= STABLE_SECONDS else min(backoff * 2, MAX_BACKOFF)
            how = f"signal {-status}" if status < 0 else f"status {status}"
            log.warning("worker %d (pid %d) exited with %s after %.0f s; restarting in %.1f s",
                        index, proc.pid, how, lived, backoff)
            await asyncio.sleep(backoff)

"""The replica's side of the OpenSSH mode: `shim_socket`, served when `openssh_mode` is on.

sshd authenticates and runs a tiny program per login; the work happens here, in the running
replica, with its pooled database connections, key cache and upstream client:

- a session from the shim (`stdio`, gateway/ssh/shim.py) runs the same exchange or command as a
  session of the replica's own SSH server (gateway/ssh/commands.py), for the account and key the
  shim names, looked up again (through the key cache, as the replica's own sessions are) so that a
  key revoked or an account disabled since sshd's check is refused within `key_cache_seconds`;
  the per-account session limit applies as well;
- a key lookup from `authorized-keys-command` is answered from the key cache (the same one
  as the replica's own logins).

Peers are told apart by the socket's peer credentials (SO_PEERCRED): sessions only from
`shim_user`, key lookups only from root or the replica's own user. Anyone else gets one line and
the connection is closed. The socket file is the replica's, of mode 0600, or 0660 with the group
of `shim_user` when that is another user; it is removed when the replica stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import stat
import struct
import time
from typing import Mapping

from gateway import messages
from gateway.errors import ConfigError
from gateway.ops import metrics, sessionlog
from gateway.registry import Identity
from gateway.services import Services
from gateway.settings import Settings
from gateway.ssh import keycommand, shimwire
from gateway.ssh.commands import run_command, run_exchange
from gateway.ssh.keycache import RegistryUnavailable
from gateway.ssh.stdio import find_identity
from gateway.upload.exchange import Peer, Reply

log = logging.getLogger(__name__)

# The shim sends its first frame as soon as it has connected.
FIRST_FRAME_TIMEOUT = 10.0
BACKLOG = 1024
# `serve --workers N`: the supervisor binds shim_socket and its workers inherit it, named here.
INHERITED_FD_ENV = "GATEWAY_SHIM_SOCKET_FD"
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a UNIX socket, as the kernel saw it connect."""
    _pid, uid, _gid = _CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    return uid


def shim_user_ids(user: str) -> tuple[int, int]:
    """(uid, primary gid) of `shim_user`."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(messages.shim_user_unknown(user)) from None
    return entry.pw_uid, entry.pw_gid


def bind_shim_socket(settings: Settings) -> socket.socket:
    """`shim_socket`, bound and listening, with the owner, group and mode the module notes say."""
    path = settings.shim_socket
    uid, gid = shim_user_ids(settings.shim_user)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(messages.shim_socket_unusable(path, exc.strerror or exc)) from None
    try:
        if uid == os.geteuid():
            os.chmod(path, 0o600)
        else:
            try:
                os.chown(path, -1, gid)
            except PermissionError:
                raise ConfigError(messages.shim_group_not_ours(path, gid, settings.shim_user)) from None
            os.chmod(path, 0o660)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        os.unlink(path)
        raise
    return sock


def _clear_stale(path: str) -> None:
    """Remove a socket file a killed replica left behind; refuse to take over a live one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(messages.shim_socket_unusable(path, "it exists and is not a socket"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError as exc:
            raise ConfigError(messages.shim_socket_unusable(path, exc.strerror or exc)) from None
    raise ConfigError(messages.shim_socket_in_use(path))


def inherited_shim_socket(environ: Mapping[str, str]) -> socket.socket | None:
    """The supervisor's shim_socket, in a worker it started (see INHERITED_FD_ENV)."""
    fd = environ.get(INHERITED_FD_ENV)
    if not fd:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.setblocking(False)
    return sock


def remove_socket_file(path: str, inode: int | None) -> None:
    """Unlink `path` if it is still the socket this process bound (`inode`), not a successor's."""
    try:
        if inode is not None and os.lstat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """The next frame, or None at the end of the stream."""
    try:
        head = await reader.readexactly(shimwire.HEAD.size)
        kind, size = shimwire.HEAD.unpack(head)
        if size > shimwire.MAX_FRAME:
            raise shimwire.WireError(f"frame of {size} bytes")
        return kind, await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


class FrameSource:
    """The session's stdin for `Exchange`, from the shim's STDIN frames. The socket's own flow
    control is the back-pressure: the stream reader stops reading when its buffer is full."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader
        self._pending = b""
        self._eof = False

    async def read(self, max_bytes: int) -> bytes:
        while not self._pending and not self._eof:
            got = await read_frame(self._reader)
            if got is None or got[0] != shimwire.STDIN:
                self._eof = True  # STDIN_EOF, the end of the stream, or anything else
            else:
                self._pending = got[1]
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data


class ShimServer:
    """Accepts on `sock` (shim_socket) and serves each connection; drains like the SSH server."""

    def __init__(self, services: Services, sock: socket.socket, *, owns_path: bool = True):
        settings = services.settings
        self._services = services
        self._sock = sock
        self._path = settings.shim_socket
        self._inode = os.lstat(self._path).st_ino if owns_path else None
        self._shim_user = settings.shim_user
        self._shim_uid = shim_user_ids(settings.shim_user)[0]
        self._lookup_uids = {0, os.geteuid()}
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> "ShimServer":
        self._server = await asyncio.start_unix_server(self._accepted, sock=self._sock)
        return self

    @property
    def in_flight(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        """Stop accepting and remove the socket file: a shim started from now on is told at once."""
        if self._server is not None:
            self._server.close()
        remove_socket_file(self._path, self._inode)
        self._inode = None

    async def drain(self, seconds: float) -> int:
        """Wait up to `seconds` for the connections in flight; cut the rest. Returns how many were cut."""
        if not self._connections:
            return 0
        _done, pending = await asyncio.wait(set(self._connections), timeout=seconds)
        for task in pending:
            task.cancel()
        return len(pending)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, shimwire.WireError, asyncio.TimeoutError) as exc:
            log.info("shim connection ended early: %s", type(exc).__name__)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid != self._shim_uid and uid not in self._lookup_uids:
            return await self._refuse(uid, writer)
        first = await asyncio.wait_for(read_frame(reader), FIRST_FRAME_TIMEOUT)
        if first is None:
            return
        kind, payload = first
        if kind == shimwire.SESSION and uid == self._shim_uid:
            await self._session(payload, reader, writer)
        elif kind == shimwire.LOOKUP and uid in self._lookup_uids:
            await self._lookup(payload.decode("ascii", "replace"), writer)
        else:
            await self._refuse(uid, writer)

    async def _refuse(self, uid: int, writer: asyncio.StreamWriter) -> None:
        log.warning("refused a connection to %s from uid %d (sessions are for %s only)", self._path, uid,
                    self._shim_user)
        metrics.SHIM_REFUSED.inc()
        await _finish(writer, stderr=messages.shim_wrong_user(uid, self._shim_user), status=1)

    async def _lookup(self, key_base64: str, writer: asyncio.StreamWriter) -> None:
        blob = keycommand.key_blob(key_base64, None)
        if blob is None:
            writer.write(shimwire.frame(shimwire.ACCOUNT))
            return await writer.drain()
        fingerprint = keycommand.fingerprint_of(blob)
        try:
            identity = await self._services.identity_for_key(fingerprint)
        except RegistryUnavailable:
            writer.write(shimwire.frame(shimwire.UNAVAILABLE))
            return await writer.drain()
        answer = f"{identity.account_name}\0{fingerprint}".encode() if identity else b""
        writer.write(shimwire.frame(shimwire.ACCOUNT, answer))
        await writer.drain()

    async def _session(self, payload: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header = shimwire.SessionHeader.decode(payload)
        except shimwire.WireError as exc:
            log.warning("refused a shim session: %s", exc)
            return await _finish(writer, stderr=f"{messages.PROGRAM}: {messages.shim_version_mismatch()}\n", status=1)
        services = self._services
        started = time.monotonic()
        done = sessionlog.FAILED
        try:
            identity = await self._identity(header)
        except Exception as exc:
            log.warning("shim session of %s: registry unavailable (%s)", header.account, type(exc).__name__)
            self._refused(header, sessionlog.REGISTRY_UNAVAILABLE)
            return await _finish(writer, stderr=messages.registry_unavailable_line(), status=1)
        if identity is None:
            self._refused(header, sessionlog.KEY_NOT_ACTIVE)
            return await _finish(writer, stderr=messages.no_active_key(header.account, header.fingerprint or None),
                                 status=1)
        sessions = services.limits.sessions
        if not sessions.acquire(identity.account_name):
            reason = messages.too_many_sessions(identity.account_name, sessions.limit)
            services.sessionlog.session(client_addr=header.client, identity=identity, started=started,
                                        outcome=sessionlog.SessionOutcome(sessionlog.TOO_MANY_SESSIONS))
            return await _finish(writer, stderr=messages.refusal_line(429, reason),
                                 stdout=Reply(429, reason, reason + "\n").to_bytes(), status=1)
        try:
            if header.command:
                result = await run_command(header.command, identity, services)
                done = sessionlog.SessionOutcome.of_command(header.command, result.status, started, time.monotonic())
                await _finish(writer, stderr=result.stderr, stdout=result.stdout.encode(), status=result.status)
            else:
                peer = Peer(identity=identity, client_addr=header.client or None)
                answer = await run_exchange(FrameSource(reader), peer, services)
                done = sessionlog.SessionOutcome.of_exchange(answer.event) if answer.event else done
                await _finish(writer, stderr=answer.stderr, stdout=answer.stdout, status=answer.status)
        except (OSError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("shim session of %s failed", identity.account_name)
            await _finish(writer, stderr=messages.session_failed(), status=1)
        finally:
            sessions.release(identity.account_name)
            services.sessionlog.session(client_addr=header.client, identity=identity, outcome=done, started=started)

    async def _identity(self, header: shimwire.SessionHeader) -> Identity | None:
        """The session's identity, if its key is still active and the account's: through the key
        cache (at most key_cache_seconds old, as for the replica's own SSH sessions) when the shim
        names the key, else the account's first active key from the registry."""
        services = self._services
        if not header.fingerprint:
            return await services.run_registry(find_identity, services.registry, header.account, None)
        identity = await services.identity_for_key(header.fingerprint)
        return identity if identity is not None and identity.account_name == header.account else None

    def _refused(self, header: shimwire.SessionHeader, reason: str) -> None:
        """sshd let the key in, but it is no longer active (or cannot be checked): a refused login."""
        self._services.sessionlog.refused(client_addr=header.client or None, username=self._shim_user,
                                          key_fingerprint=header.fingerprint or None, reason=reason)


async def _finish(writer: asyncio.StreamWriter, *, stderr: str = "", stdout: bytes = b"", status: int) -> None:
    """The end of a session: stderr first (the notice), then stdout (the answer), then the status."""
    out = b""
    if stderr:
        out += shimwire.frames(shimwire.STDERR, stderr.encode("utf-8"))
    if stdout:
        out += shimwire.frames(shimwire.STDOUT, stdout)
    writer.write(out + shimwire.frame(shimwire.EXIT, str(status).encode()))
    await writer.drain()

"""The replica's side of the OpenSSH mode: `shim_socket`, served when `openssh_mode` is on.

sshd authenticates (its AuthorizedKeysCommand greps the replica's `authorized_keys_file`) and runs
the shim per session (gateway/ssh/shim.py); the work happens here, in the running replica, with
its pooled database connections, key cache and upstream client. A session from the shim is run by
the same session runner as the replica's own SSH sessions (gateway/ssh/runner.py), for the account
and key the shim names, looked up again (through the key cache) so that a key revoked or an
account disabled since the key file was written is refused within `key_cache_seconds`.

Peers are told apart by the socket's peer credentials (SO_PEERCRED): sessions only from
`shim_user`. Anyone else gets one line and the connection is closed. The socket file is the
replica's, of mode 0600, or 0660 with the group of `shim_user` when that is another user; it is
removed when the replica stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import stat
import struct
from collections.abc import Mapping

from sqlalchemy.exc import SQLAlchemyError

from gateway import phrases
from gateway.errors import ConfigError
from gateway.ops import metrics
from gateway.registry import AdminInputError
from gateway.services import Services
from gateway.settings import Settings
from gateway.ssh import shimwire, user_texts
from gateway.ssh.runner import ClientGone, FrontEnd, claimed, run_session
from gateway.upload.exchange import Peer

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
        raise ConfigError(user_texts.shim_user_unknown(user)) from None
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
        raise ConfigError(user_texts.shim_socket_unusable(path, exc.strerror or exc)) from None
    try:
        if uid == os.geteuid():
            os.chmod(path, 0o600)
        else:
            try:
                os.chown(path, -1, gid)
            except PermissionError:
                raise ConfigError(user_texts.shim_group_not_ours(path, gid, settings.shim_user)) from None
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
        raise ConfigError(user_texts.shim_socket_unusable(path, "it exists and is not a socket"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError as exc:
            raise ConfigError(user_texts.shim_socket_unusable(path, exc.strerror or exc)) from None
    raise ConfigError(user_texts.shim_socket_in_use(path))


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


class FrameSink:
    """The session's stdout and stderr for the session runner, as frames to the shim."""

    def __init__(self, writer: asyncio.StreamWriter):
        self._writer = writer

    async def write(self, *, stdout: bytes = b"", stderr: bytes = b"") -> None:
        out = shimwire.frames(shimwire.STDERR, stderr) if stderr else b""
        if stdout:
            out += shimwire.frames(shimwire.STDOUT, stdout)
        try:
            self._writer.write(out)
            await self._writer.drain()
        except OSError as exc:
            raise ClientGone(type(exc).__name__) from None

    async def exit(self, status: int, *, stderr: str = "") -> None:
        """The last frame, the exit status (after a line on stderr, in the same write)."""
        out = shimwire.frames(shimwire.STDERR, stderr.encode()) if stderr else b""
        self._writer.write(out + shimwire.frame(shimwire.EXIT, str(status).encode()))
        await self._writer.drain()


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
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> ShimServer:
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
            await self._serve(reader, FrameSink(writer), peer_uid(writer.get_extra_info("socket")))
        except (TimeoutError, OSError, shimwire.WireError) as exc:
            log.info("shim connection ended early: %s", type(exc).__name__)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, sink: FrameSink, uid: int) -> None:
        # Read before answering even a refusal: a close with the frame unread would reset the
        # connection, and the peer would lose the answer.
        first = await asyncio.wait_for(read_frame(reader), FIRST_FRAME_TIMEOUT)
        if first is None:
            return  # connected and went away
        if uid != self._shim_uid or first[0] != shimwire.SESSION:
            log.warning("refused a connection to %s from uid %d (sessions are for %s only)", self._path, uid,
                        self._shim_user)
            metrics.SHIM_REFUSED.inc()
            return await sink.exit(1, stderr=user_texts.shim_wrong_user(uid, self._shim_user))
        try:
            header = shimwire.SessionHeader.decode(first[1])
        except shimwire.WireError as exc:
            log.warning("refused a shim session: %s", exc)
            return await sink.exit(1, stderr=f"{phrases.PROGRAM}: {user_texts.shim_version_mismatch()}\n")
        fingerprint = header.fingerprint or await self._first_key(header.account)
        peer = Peer(identity=claimed(header.account, fingerprint), client_addr=header.client or None)
        ended = await run_session(self._services, peer, header.command, FrameSource(reader), sink,
                                  FrontEnd(key_checked=False, username=self._shim_user))
        await sink.exit(ended.status)

    async def _first_key(self, account: str) -> str:
        """The fingerprint of the account's first active key, for a shim that names none ("" when
        there is none, or the registry cannot say: the session's identity check then refuses it)."""
        registry = self._services.registry
        try:
            keys = await self._services.run_registry(
                lambda: registry.keys.list_keys(account, include_revoked=False))
        except (SQLAlchemyError, AdminInputError) as exc:  # the database failed; no such account
            log.warning("cannot list the keys of account %s: %s", account, type(exc).__name__)
            return ""
        return keys[0].fingerprint if keys else ""

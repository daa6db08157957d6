"""The SSH port: accepting TCP connections, the optional PROXY header, and handing each socket to
asyncssh; also what a graceful drain needs (stop accepting, wait for connections in flight).

asyncssh reads from the socket through a buffered transport, so the PROXY header (which asyncssh
does not speak) is taken off the socket first, byte-exactly: peek to see how long it is, then
receive exactly that many bytes, so the client's first SSH bytes stay in the kernel for asyncssh.

Each process binds the port itself with SO_REUSEPORT, so `serve --workers N` runs N independent
accept loops and the kernel spreads connections across them.

When the process runs out of file descriptors, accept fails for every connection waiting in the
backlog; the loop backs off (longer each time, up to a second) instead of spinning, and says so
in the log once per `ACCEPT_LOG_INTERVAL`, with the count, instead of once per failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field

import asyncssh

from gateway.ops import metrics, sessionlog
from gateway.ssh import proxyproto, user_texts
from gateway.ssh.asyncssh_seams import connect_accepted_socket

log = logging.getLogger(__name__)

# HAProxy writes the header as soon as it has connected; a peer that has not sent it within this
# time is not our balancer (or is stuck), and holds a socket for nothing.
HEADER_TIMEOUT = 5.0
# After drain_seconds, connections still open are told to reconnect and given this long to close.
DISCONNECT_GRACE = 2.0
BACKLOG = 1024
# Failed accepts are logged at most once per this many seconds (with how many there were).
ACCEPT_LOG_INTERVAL = 10.0
# Pauses after a failed accept: the first, and the most a run of failures grows it to.
ACCEPT_BACKOFF = 0.05
ACCEPT_BACKOFF_MAX = 1.0
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# A TCP client's address as accept() gives it: (host, port), plus flow info and scope id for IPv6.
ClientAddress = tuple[str, int] | tuple[str, int, int, int]


class ProxyRefused(Exception):
    """A connection that must be closed before SSH starts; `reason` labels the metric."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def bind(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A listening, non-blocking TCP socket; with SO_REUSEPORT several processes share the port."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def port_held_by_another(host: str, port: int) -> bool:
    """Whether another process holds the port. Our own workers share it with SO_REUSEPORT, and so
    would a stray second gateway of the same user, silently taking a share of the connections: a
    bind without SO_REUSEPORT fails on any holder (SO_REUSEADDR still lets it pass the connections
    of a previous run in TIME_WAIT)."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def is_trusted(host: str, allowed: tuple) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in allowed)


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def read_proxy_header(sock: socket.socket) -> proxyproto.ProxyHeader | None:
    """Take the PROXY header off a non-blocking socket, leaving every byte after it unread.

    Returns None when the peer's first bytes are not a PROXY header (a plain SSH client).
    Raises ProxyHeaderError for a malformed header and ConnectionError if the peer goes away.
    """
    taken = b""
    while True:
        await _readable(sock)
        peeked = sock.recv(proxyproto.V2_MAX, socket.MSG_PEEK)
        if not peeked:
            raise ConnectionResetError("the peer closed the connection before sending anything")
        data = taken + peeked
        kind = proxyproto.classify(data)
        if kind == "none":
            return None
        if kind == "more":
            # A signature split across packets: the bytes stay in the kernel (they may yet be
            # SSH's) and the socket stays readable, so wait a moment instead of spinning.
            await asyncio.sleep(0.01)
            continue
        total = proxyproto.header_length(data)
        # Every byte seen is the header's until its length is known.
        want = min(total, len(data)) - len(taken) if total is not None else len(peeked)
        while want > 0:
            chunk = sock.recv(want)  # already in the kernel's buffer: this does not block
            if not chunk:
                raise ConnectionResetError("the peer closed the connection inside the PROXY header")
            taken += chunk
            want -= len(chunk)
        if total is not None and len(taken) == total:
            return proxyproto.parse(taken)


class AcceptBackoff:
    """How long to pause after failed accepts, and when to say so in the log (pure: the clock is
    passed in). `failed` returns the pause and whether to log now; `succeeded` resets the pause."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, interval: float = ACCEPT_LOG_INTERVAL):
        self._clock = clock
        self._interval = interval
        self._pause = 0.0
        self._last_logged: float | None = None
        self.unlogged = 0  # failures since the last log line

    def failed(self) -> tuple[float, bool]:
        self._pause = min(ACCEPT_BACKOFF_MAX, self._pause * 2 if self._pause else ACCEPT_BACKOFF)
        self.unlogged += 1
        now = self._clock()
        if self._last_logged is not None and now - self._last_logged < self._interval:
            return self._pause, False
        self._last_logged = now
        return self._pause, True

    def logged(self) -> None:
        self.unlogged = 0

    def succeeded(self) -> None:
        self._pause = 0.0


# The connection's extra info that carries its state (`sessionlog.Connection`) to the SSH server.
STATE = "connection_state"


@dataclass(eq=False)
class _Connection:
    state: sessionlog.Connection
    task: asyncio.Task | None = None
    conn: asyncssh.SSHServerConnection | None = None


@dataclass
class ProxySettings:
    mode: str = "off"  # off | use | require
    allowed: tuple = field(default_factory=tuple)


class GatewayListener:
    """Accepts on one listening socket; shaped like asyncssh's acceptor (`sockets`, `close`,
    `wait_closed`) plus `in_flight` and `drain` for a graceful stop."""

    def __init__(self, sock: socket.socket, options: asyncssh.SSHServerConnectionOptions,
                 proxy: ProxySettings | None = None,
                 new_state: Callable[[], sessionlog.Connection] | None = None):
        sock.setblocking(False)
        self._sock = sock
        self._options = options
        self._proxy = proxy or ProxySettings()
        # Each connection's one state: this listener's, its server's and the log's.
        self._new_state = new_state or sessionlog.SessionLog().connection
        self._connections: set[_Connection] = set()
        self._accepting: asyncio.Task | None = None
        self._companions: set[asyncio.Task] = set()
        self.sockets = [sock]

    def use_options(self, options: asyncssh.SSHServerConnectionOptions) -> None:
        """Serve new connections with `options` (host keys read again); open ones keep theirs."""
        self._options = options

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> GatewayListener:
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())
        return self

    def alongside(self, work: Coroutine) -> None:
        """Run `work` (a periodic check of the open connections) while there are connections:
        until the drain ends or `wait_closed`."""
        self._companions.add(asyncio.get_running_loop().create_task(work))

    def _stop_companions(self) -> None:
        for task in self._companions:
            task.cancel()
        self._companions.clear()

    @property
    def in_flight(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        """Stop accepting; connections already open carry on."""
        if self._accepting is not None:
            self._accepting.cancel()
        if self._sock.fileno() >= 0:
            self._sock.close()

    async def wait_closed(self) -> None:
        companions = list(self._companions)
        self._stop_companions()
        if companions:
            await asyncio.wait(companions)
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting

    async def drain(self, seconds: float) -> int:
        """Wait up to `seconds` for open connections to finish; then disconnect the rest.

        Returns how many had to be cut.
        """
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, seconds))
        left = [c for c in self._connections if c.task is not None and not c.task.done()]
        for entry in left:
            if entry.conn is not None:
                entry.conn.disconnect(asyncssh.DISC_BY_APPLICATION, user_texts.restarting_disconnect())
            elif entry.task is not None:
                entry.task.cancel()
        if left:
            await asyncio.wait([c.task for c in left if c.task is not None], timeout=DISCONNECT_GRACE)
        self._stop_companions()
        return len(left)

    # -- accepting ------------------------------------------------------------------------------
    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = AcceptBackoff()
        while True:
            try:
                sock, address = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # out of file descriptors, or a connection reset while queued
                metrics.ACCEPT_ERRORS.inc()
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    log.debug("accept failed: %s", exc)
                    continue
                pause, tell = backoff.failed()
                if tell:
                    log.warning("accept failed: %s (%d failed accepts since the last such line); pausing "
                                "accepts, connections wait in the backlog", exc, backoff.unlogged)
                    backoff.logged()
                await asyncio.sleep(pause)
                continue
            backoff.succeeded()
            sock.setblocking(False)
            entry = _Connection(self._new_state())
            self._connections.add(entry)
            entry.task = loop.create_task(self._serve(entry, sock, address))
            entry.task.add_done_callback(functools.partial(self._ended, entry))

    def _ended(self, entry: _Connection, _task: asyncio.Task) -> None:
        self._connections.discard(entry)

    async def _serve(self, entry: _Connection, sock: socket.socket, address: ClientAddress) -> None:
        metrics.CONNECTIONS.inc()
        metrics.CONNECTIONS_IN_FLIGHT.inc()
        try:
            extra = await self._client_address(sock, address)
            entry.conn = await self._start_ssh(entry, sock, extra)
            await entry.conn.wait_closed()
            if not entry.state.authenticated:
                metrics.AUTH_FAILURES.inc()
        except ProxyRefused as exc:
            metrics.PROXY_REFUSED.labels(reason=exc.reason).inc()
            log.warning("connection from %s refused: %s", address[0], exc)
            sock.close()
        except (ConnectionError, OSError) as exc:
            log.debug("connection from %s ended early: %s", address[0], exc)
            sock.close()
        finally:
            metrics.CONNECTIONS_IN_FLIGHT.dec()

    async def _client_address(self, sock: socket.socket, address: ClientAddress) -> dict:
        """Extra connection info: the real client's `peername` when a trusted balancer says so."""
        mode = self._proxy.mode
        if mode == "off":
            return {}
        if not is_trusted(address[0], self._proxy.allowed):
            if mode == "require":
                raise ProxyRefused("untrusted", f"{address[0]} is not in proxy_allowed")
            return {}  # `use`: a direct client; any header it sends is not believed, SSH rejects it
        try:
            header = await asyncio.wait_for(read_proxy_header(sock), HEADER_TIMEOUT)
        except TimeoutError:
            if mode == "require":
                raise ProxyRefused("timeout", f"no PROXY header within {HEADER_TIMEOUT:.0f} s") from None
            return {}  # `use`: a client that waits for our SSH banner first
        except proxyproto.ProxyHeaderError as exc:
            raise ProxyRefused("malformed", str(exc)) from None
        if header is None:
            if mode == "require":
                raise ProxyRefused("missing", "the connection did not start with a PROXY header")
            return {}
        if header.client is None:
            return {"proxy_peername": address}
        return {"peername": header.client, "proxy_peername": address}

    async def _start_ssh(self, entry: _Connection, sock: socket.socket, extra: dict) -> asyncssh.SSHServerConnection:
        def logged_in() -> None:
            entry.state.authenticated = True

        return await connect_accepted_socket(sock, self._options, extra={**extra, STATE: entry.state},
                                             on_login=logged_in)

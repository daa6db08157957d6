"""Pooled HTTPS sessions that say how far each attempt got, and a deadline that cuts one off.

Whether a failed upload may have been published depends on facts `requests` does not report: was
the connection new or taken from the pool, was the whole request sent, had the answer started?
The connection classes below note them in an `Attempt` the calling thread sets before it sends
(each request runs synchronously in its thread, so a thread-local is exact). A `Deadline` bounds
a whole exchange, all attempts included: a server that trickles its answer a byte at a time never
trips a socket timeout, so when the deadline passes it shuts the attempt's socket down.

Built on urllib3's own extension points (the pool manager's pool classes by scheme, a pool's
`ConnectionCls` and `_get_conn`) under an ordinary `requests` session: verification, pooling and
timeouts stay theirs; these classes only observe, and refuse a pooled connection when asked.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection  # the pool's own return type

CONNECTING = "connecting"  # no byte of the request has left
SENDING = "sending"  # connected; the request is on its way, not all of it sent
AWAITING = "awaiting"  # the whole request was sent; no status line yet
ANSWERED = "answered"  # the status line and headers arrived

_current = threading.local()


@dataclass
class Attempt:
    """What one request attempt got to. `fresh_only` makes it refuse a pooled connection."""

    fresh_only: bool = False
    phase: str = CONNECTING
    new_connection: bool = False
    _socket: socket.socket | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _active: bool = field(default=True, repr=False)
    cut_off: bool = False
    cut_during: str | None = None  # the phase the cut-off came in

    @property
    def answer_cut_short(self) -> bool:
        """Cut off before the answer's head was complete. What http.client parsed then may be a
        status line or headers ended by the cut, not by the server: it is no answer."""
        return self.cut_off and self.cut_during != ANSWERED

    @property
    def reused(self) -> bool:
        """The attempt went out on a connection an earlier request had opened."""
        return self.phase != CONNECTING and not self.new_connection

    @property
    def request_sent(self) -> bool:
        return self.phase in (AWAITING, ANSWERED)

    def _track(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock
            if self.cut_off:
                _shut(sock)

    def cut(self) -> None:
        """Shut the attempt's socket down (from another thread): its blocked read or write ends.
        A socket the attempt opens after this is shut down at once."""
        with self._lock:
            if not self._active:
                return
            if not self.cut_off:
                self.cut_off, self.cut_during = True, self.phase
            _shut(self._socket)

    def finish(self) -> None:
        """The attempt is over: a later cut must not touch a connection back in the pool."""
        with self._lock:
            self._active = False
            self._socket = None


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its TLS
    # state while another thread is still inside a read.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class tracking:
    """`with tracking(attempt):` requests made by this thread report into `attempt`."""

    def __init__(self, attempt: Attempt):
        self.attempt = attempt

    def __enter__(self) -> Attempt:
        self._previous = getattr(_current, "attempt", None)
        _current.attempt = self.attempt
        return self.attempt

    def __exit__(self, *exc_info: object) -> None:
        _current.attempt = self._previous
        self.attempt.finish()


def current_attempt() -> Attempt | None:
    return getattr(_current, "attempt", None)


# What the mixins below extend, as the type checker sees them (at run time they mix into both).
if TYPE_CHECKING:
    _ConnectionBase = HTTPConnection
    _PoolBase = HTTPConnectionPool
else:
    _ConnectionBase = _PoolBase = object


class _Traced(_ConnectionBase):
    """Mixed into urllib3's connection classes: note the phase as the request goes."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        attempt = current_attempt()
        if attempt is not None:
            attempt.new_connection = True
            attempt._track(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:  # passed on unchanged
        attempt = current_attempt()
        if attempt is not None:
            if self.sock is None:  # plain HTTP connects here (HTTPS has connected already)
                self.connect()
            attempt.phase = SENDING
            attempt._track(self.sock)
        super().request(*args, **kwargs)
        if attempt is not None:
            attempt.phase = AWAITING

    # urllib3's getresponse narrows http.client's return type and is marked the same way.
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        response = super().getresponse()
        attempt = current_attempt()
        if attempt is not None:
            attempt.phase = ANSWERED
        return response


class _TracedHTTPConnection(_Traced, HTTPConnection):
    pass


class _TracedHTTPSConnection(_Traced, HTTPSConnection):
    pass


class _FreshOnDemand(_PoolBase):
    """Mixed into the pools: an attempt marked `fresh_only` never gets a pooled connection."""

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        conn = super()._get_conn(timeout)
        attempt = current_attempt()
        if attempt is not None and attempt.fresh_only and not conn.is_closed:
            conn.close()  # connected again (and verified again) before the request
        return conn


class _TracedHTTPConnectionPool(_FreshOnDemand, HTTPConnectionPool):
    ConnectionCls = _TracedHTTPConnection


class _TracedHTTPSConnectionPool(_FreshOnDemand, HTTPSConnectionPool):
    ConnectionCls = _TracedHTTPSConnection


class TracingAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections report into the thread's `Attempt`; never retries itself."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_retries", 0)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TracedHTTPConnectionPool, "https": _TracedHTTPSConnectionPool}


def verified_session(ca_bundle: str | None, *, pool_maxsize: int = 10) -> requests.Session:
    """A session that always verifies certificates (against `ca_bundle` when given) and ignores
    the environment's proxies and CA settings: the gateway's own settings decide."""
    session = requests.Session()
    session.verify = ca_bundle or True
    session.trust_env = False
    adapter = TracingAdapter(pool_connections=2, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class Deadline:
    """One time limit for a whole exchange. While armed, a timer cuts off whatever attempt is in
    flight when it passes; `remaining()` bounds the socket timeouts and the sleeps in between."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._ends = clock() + seconds
        self._attempt: Attempt | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.expired = False

    def remaining(self) -> float:
        return max(0.0, self._ends - self._clock())

    def __enter__(self) -> Deadline:
        self._timer = threading.Timer(self.remaining(), self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def watch(self, attempt: Attempt) -> tracking:
        """Track `attempt` for this thread and let the deadline cut it off."""
        with self._lock:
            self._attempt = attempt
            if self.expired:
                attempt.cut()
        return tracking(attempt)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            attempt = self._attempt
        if attempt is not None:
            attempt.cut()

"""What went wrong on the way to an HTTPS server, read from the exception `requests` raised.

`requests` wraps the real cause several layers deep (its own exception, urllib3's MaxRetryError
and SSLError, then the ssl or socket error), and it reports every TLS-layer problem as
`requests.exceptions.SSLError`: a certificate it cannot verify, but also a pooled connection the
server closed while the TLS layer was reading (an "EOF occurred in violation of protocol"). Only
the first is a certificate problem. `classify()` walks the whole chain and names the cause; it is
pure, so every shape of chain can be tested directly.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

E = TypeVar("E", bound=BaseException)

CERTIFICATE = "certificate"  # the server's certificate cannot be verified: never retried
TLS = "tls"  # any other TLS failure: handshake EOF, protocol error, alert
REFUSED = "refused"  # nothing listens there
UNRESOLVED = "unresolved"  # the host name does not resolve
TIMEOUT = "timeout"  # no progress within the socket timeout
RESET = "reset"  # the peer reset the connection
CLOSED = "closed"  # the peer closed the connection (EOF, broken pipe)
OTHER = "other"


@dataclass(frozen=True)
class TransportFailure:
    """The cause of a failed attempt: a kind from this module and a short text for people."""

    kind: str
    detail: str

    @property
    def certificate(self) -> bool:
        return self.kind == CERTIFICATE


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything behind it: __cause__, __context__, urllib3's `reason`, and exceptions
    passed as arguments (requests stores urllib3's error in args[0]). Each one once."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))


def _first(exc: BaseException, kinds: type[E] | tuple[type[E], ...]) -> E | None:
    return next((item for item in causes(exc) if isinstance(item, kinds)), None)


def _timeout_types() -> tuple[type[BaseException], ...]:
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    return (TimeoutError, socket.timeout, Urllib3Timeout)


def _tls_detail(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).replace("_", " ").lower()


def classify(exc: BaseException) -> TransportFailure:
    """Name the cause of `exc`. A certificate failure anywhere in the chain wins over everything
    else; then the most specific socket-level cause."""
    certificate = _first(exc, ssl.SSLCertVerificationError)
    if certificate is not None:
        return TransportFailure(CERTIFICATE, certificate.verify_message or _tls_detail(certificate))
    if _first(exc, ConnectionRefusedError) is not None:
        return TransportFailure(REFUSED, "connection refused")
    if _first(exc, socket.gaierror) is not None or _name_resolution(exc):
        return TransportFailure(UNRESOLVED, "the host name does not resolve")
    if _first(exc, ConnectionResetError) is not None:
        return TransportFailure(RESET, "connection reset")
    if _first(exc, _timeout_types()) is not None:
        return TransportFailure(TIMEOUT, "timed out")
    # Before the generic TLS errors: a closed connection under TLS shows up as an SSLEOFError.
    closed = _first(exc, (BrokenPipeError, http.client.RemoteDisconnected, http.client.IncompleteRead,
                          ssl.SSLEOFError, ssl.SSLZeroReturnError))
    if closed is not None:
        return TransportFailure(CLOSED, "connection closed")
    tls = _first(exc, ssl.SSLError)
    if tls is not None:
        return TransportFailure(TLS, f"TLS error: {_tls_detail(tls)}")
    if _first(exc, (http.client.HTTPException, ConnectionError)) is not None:
        return TransportFailure(CLOSED, "connection closed")
    return TransportFailure(OTHER, type(exc).__name__)


def _name_resolution(exc: BaseException) -> bool:
    from urllib3.exceptions import NameResolutionError

    return _first(exc, NameResolutionError) is not None

"""Naming the cause of a failed HTTPS attempt from the exception chain `requests` raises: a
certificate failure anywhere in the chain, and only that, is a certificate failure."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
import requests
import urllib3.exceptions

from gateway.upload import failures
from gateway.upload.failures import classify
from gateway.upload.upstream import already_exists
from testbed.tlsca import make_tls


class _Listener:
    """A loopback TCP listener that runs `handle(conn)` for each connection, in a thread."""

    def __init__(self, handle):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                self.handle(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    started = []

    def _start(handle):
        started.append(_Listener(handle))
        return started[-1]

    yield _start
    for item in started:
        item.close()


def _raised(url: str, **kwargs) -> BaseException:
    with pytest.raises(requests.RequestException) as info:
        requests.get(url, timeout=5, **kwargs)
    return info.value


def test_a_real_untrusted_certificate_is_a_certificate_failure(listener, tmp_path):
    """A TLS server whose CA the client does not trust: classified as a certificate failure."""
    server_tls, other = make_tls(tmp_path / "server"), make_tls(tmp_path / "other")
    context = server_tls.server_context()

    def handshake(conn):
        try:
            context.wrap_socket(conn, server_side=True).close()
        except ssl.SSLError:
            pass

    server = listener(handshake)
    failure = classify(_raised(f"https://127.0.0.1:{server.port}/", verify=str(other.ca_cert)))
    assert failure.certificate and failure.kind == failures.CERTIFICATE
    assert "certificate" in failure.detail


def test_a_real_handshake_cut_off_is_not_a_certificate_failure(listener, tmp_path):
    """A server that closes during the TLS handshake: requests says SSLError, the cause is a closed connection."""
    server = listener(lambda conn: conn.close())
    exc = _raised(f"https://127.0.0.1:{server.port}/", verify=str(make_tls(tmp_path / "ca").ca_cert))
    failure = classify(exc)
    assert not failure.certificate
    assert failure.kind in (failures.CLOSED, failures.RESET)


def test_a_real_refused_connection_is_named(listener):
    """Nothing listening: connection refused."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert classify(_raised(f"https://127.0.0.1:{port}/")) == failures.TransportFailure(
        failures.REFUSED, "connection refused")


def _chain(*layers: BaseException) -> BaseException:
    """Raise each layer while handling the one before (implicit __context__), return the last."""
    caught: BaseException | None = None
    for layer in layers:
        try:
            try:
                if caught is not None:
                    raise caught
                raise layer
            except BaseException:
                if caught is not None:
                    raise layer
                raise
        except BaseException as exc:
            caught = exc
    assert caught is not None
    return caught


def test_certificate_error_deep_in_the_context_chain_wins():
    """SSLCertVerificationError three levels down, behind requests' and urllib3's errors, is found."""
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    verify.verify_message = "self-signed certificate"
    exc = _chain(verify, urllib3.exceptions.SSLError("wrapped"), requests.exceptions.SSLError("outer"))
    assert exc.__context__ is not None
    assert classify(exc) == failures.TransportFailure(failures.CERTIFICATE, "self-signed certificate")


def test_tls_eof_inside_requests_ssl_error_is_a_closed_connection():
    """requests' SSLError around urllib3's MaxRetryError around an SSLEOFError: closed, not certificate."""
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2426)")
    retry = urllib3.exceptions.MaxRetryError(None, "/", reason=urllib3.exceptions.SSLError(eof))
    failure = classify(requests.exceptions.SSLError(retry))
    assert failure.kind == failures.CLOSED and not failure.certificate


def test_other_tls_errors_are_tls_failures():
    """A TLS alert that is not about the certificate is named as a TLS error."""
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version")
    alert.reason = "TLSV1_ALERT_PROTOCOL_VERSION"
    failure = classify(requests.exceptions.SSLError(urllib3.exceptions.SSLError(alert)))
    assert failure.kind == failures.TLS and "tlsv1 alert protocol version" in failure.detail


@pytest.mark.parametrize("cause,kind", [
    (ConnectionResetError(104, "Connection reset by peer"), failures.RESET),
    (urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), failures.TIMEOUT),
    (urllib3.exceptions.ConnectTimeoutError("timed out"), failures.TIMEOUT),
    (BrokenPipeError(32, "Broken pipe"), failures.CLOSED),
    (socket.gaierror(-2, "Name or service not known"), failures.UNRESOLVED),
])
def test_socket_causes_are_named(cause, kind):
    """Reset, timeouts, a broken pipe and an unknown host are told apart through requests' wrapping."""
    wrapped = requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason=cause))
    assert classify(wrapped).kind == kind


def test_a_cyclic_chain_ends():
    """Exceptions that refer to each other are each looked at once."""
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert classify(first) == failures.TransportFailure(failures.OTHER, "RuntimeError")


@pytest.mark.parametrize("status,reason,expected", [
    (409, "Conflict: file exists", True),
    (400, "File already exists ('demo-1.0.tar.gz', with blake2_256 hash 'abc').", True),
    (400, "Invalid value for classifiers", False),
    (403, "Invalid API Token: already exists", False),
])
def test_already_exists_is_recognised_on_both_indexes(status, reason, expected):
    """pypiserver's 409 and the real index's 400 'File already exists' both mean the file is there."""
    assert already_exists(status, reason) is expected

"""A TLS front for the test upstream that misbehaves on purpose, the way index front ends and
networks do: it resets kept-alive connections, swallows answers, sends endless or broken bodies.

    plan = lambda seen: RESET_AFTER_HEADERS if seen.on_connection == 2 else FORWARD
    with FlakyProxy(upstream, plan) as proxy:
        proxy.url            # point the gateway's upstream_url here
        proxy.connections    # TCP connections accepted so far
        proxy.seen           # every request, in arrival order, with the action taken

The plan is asked once per request, after its headers have arrived. Requests it forwards go to
the real pypiserver (a new connection each, through TLS verified against the upstream's CA), so
what is stored upstream is exactly what got through. The proxy presents the upstream's own
certificate unless given other TLS files (a certificate from another CA for the untrusted case).
Requests are parsed with h11; the broken answers are written by hand, since h11 would refuse to.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

import h11

from testbed.tlsca import TlsFiles
from testbed.upstream import TlsPypiServer

FORWARD = "forward"  # pass the request on and its answer back
RESET_AFTER_HEADERS = "reset-after-headers"  # RST as soon as the request's headers are in
RESET_UNFORWARDED = "reset-unforwarded"  # read the whole request, forward nothing, RST
STORE_THEN_RESET = "store-then-reset"  # forward the whole request, drop the answer, RST
HUGE_BODY = "huge-body"  # forward; answer with its status line and a body of `huge_bytes`
BROKEN_CHUNKED = "broken-chunked"  # forward; answer with its status line and a corrupt chunked body
TRICKLE = "trickle"  # forward; then send an answer's head one byte at a time, never finishing it
STORE_THEN_504 = "store-then-504"  # forward the whole request, answer 504 whatever the upstream said
REDIRECT_UNFORWARDED = "redirect-unforwarded"  # read the whole request, forward nothing, answer 302

ACTIONS = (FORWARD, RESET_AFTER_HEADERS, RESET_UNFORWARDED, STORE_THEN_RESET, HUGE_BODY, BROKEN_CHUNKED, TRICKLE,
           STORE_THEN_504, REDIRECT_UNFORWARDED)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade"}
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it."""

    number: int  # over the proxy's life, from 1
    connection: int  # which connection, from 1
    on_connection: int  # which request on that connection, from 1
    method: str
    target: str


@dataclass
class Handled:
    seen: Seen
    action: str
    upstream_status: int | None = None


class FlakyProxy:
    def __init__(self, upstream: TlsPypiServer, plan: Callable[[Seen], str], *, tls: TlsFiles | None = None,
                 huge_bytes: int = 50 * 1024 * 1024):
        self.upstream = upstream
        self.plan = plan
        self.huge_bytes = huge_bytes
        self._server_context = (tls or upstream.tls).server_context()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.connections = 0
        self.handled: list[Handled] = []
        self.body_bytes_sent = 0  # of the huge bodies, what the client took before it left

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return [h.seen for h in self.handled]

    def actions(self) -> list[str]:
        with self._lock:
            return [h.action for h in self.handled]

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FlakyProxy":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="flaky-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> "FlakyProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(raw, number), daemon=True).start()

    # -- one connection -------------------------------------------------------------------------
    def _serve(self, raw: socket.socket, number: int) -> None:
        raw.settimeout(60)
        try:
            sock = self._server_context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # e.g. the client refused the certificate
            return
        try:
            self._requests(sock, number)
        except (OSError, h11.ProtocolError):
            pass
        finally:
            sock.close()

    def _requests(self, sock: ssl.SSLSocket, connection: int) -> None:
        conn = h11.Connection(h11.SERVER)
        on_connection = 0
        while True:
            event = self._next_event(conn, sock)
            if not isinstance(event, h11.Request):
                return
            on_connection += 1
            with self._lock:
                seen = Seen(len(self.handled) + 1, connection, on_connection, event.method.decode(),
                            event.target.decode())
                action = self.plan(seen)
                handled = Handled(seen, action)
                self.handled.append(handled)
            if action == RESET_AFTER_HEADERS:
                return _reset(sock)
            body = self._read_body(conn, sock)
            if action == RESET_UNFORWARDED:
                return _reset(sock)
            if action == REDIRECT_UNFORWARDED:
                sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/legacy/\r\n"
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return None
            status, reason, headers, payload = self._forward(event, body)
            handled.upstream_status = status
            if action == STORE_THEN_RESET:
                return _reset(sock)
            if action == STORE_THEN_504:  # a front end that gave up waiting on a server that stored it
                status, reason, headers, payload = 504, "Gateway Timeout", [], b"gateway timeout\n"
            elif action != FORWARD:
                return self._misanswer(action, sock, status, reason)
            response_headers = [*headers, ("Content-Length", str(len(payload)))]
            sock.sendall(conn.send(h11.Response(status_code=status, reason=reason.encode("latin-1"),
                                                headers=response_headers)))
            sock.sendall(conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _next_event(self, conn: h11.Connection, sock: ssl.SSLSocket):
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(sock.recv(CHUNK))

    def _read_body(self, conn: h11.Connection, sock: ssl.SSLSocket) -> bytes:
        parts = []
        while True:
            event = self._next_event(conn, sock)
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise h11.RemoteProtocolError("the request ended early")

    def _forward(self, request: h11.Request, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {name.decode(): value.decode("latin-1") for name, value in request.headers
                   if name.decode().lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPSConnection(self.upstream.host, self.upstream.port,
                                               context=self.upstream.client_context(), timeout=60)
        try:
            upstream.request(request.method.decode(), request.target.decode(), body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, response.reason, kept, payload
        finally:
            upstream.close()

    # -- answers no well-behaved server gives ---------------------------------------------------
    def _misanswer(self, action: str, sock: ssl.SSLSocket, status: int, reason: str) -> None:
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html\r\n"
        if action == HUGE_BODY:
            sock.sendall(f"{head}Content-Length: {self.huge_bytes}\r\n\r\n".encode("latin-1"))
            self._send_huge(sock)
        elif action == BROKEN_CHUNKED:
            sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode("latin-1")
                         + b"10\r\n<html>uploaded.\r\nthis-is-no-chunk-size\r\n")
        elif action == TRICKLE:
            self._trickle(sock, f"HTTP/1.1 {status} {reason}\r\nX-Slow: ".encode("latin-1"))

    def _send_huge(self, sock: ssl.SSLSocket) -> None:
        block = b"<p>" + b"x" * (CHUNK - 3)
        left = self.huge_bytes
        while left > 0 and not self._stopping.is_set():
            piece = block[:left]
            try:
                sock.sendall(piece)
            except OSError:
                return
            left -= len(piece)
            with self._lock:
                self.body_bytes_sent += len(piece)

    def _trickle(self, sock: ssl.SSLSocket, head: bytes) -> None:
        sock.sendall(head)
        while not self._stopping.is_set():
            try:
                sock.sendall(b"z")
            except OSError:
                return
            time.sleep(0.1)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a front end that drops the connection does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()

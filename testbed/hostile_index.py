"""A hostile or broken package index over TLS: each project's page misbehaves as the test says.

    with HostileIndex(tls) as index:
        index.behave("demo", MIXED)          # what /simple/demo/ does
        index.url                            # https://127.0.0.1:PORT/simple/
        index.plain_connections              # connections that reached its plain-http twin

What a reader of the simple API must survive (gateway/upload/index.py): redirects to plain http
(a listener on another port stands for it, and counts whoever connects) or to another host (the
same server under the name `localhost`), a page that declares or streams far more than it may, a
page that trickles forever, a page of many files, and a page whose files are each wrong in their
own way next to one good file. Unknown projects get 404.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any

from testbed.tlsca import TlsFiles

JSON_TYPE = "application/vnd.pypi.simple.v1+json"

GOOD = "good"  # one file of the project, uploaded in 2026
TO_HTTP = "to-http"  # 302 to the same page over plain http
TO_OTHER_HOST = "to-other-host"  # 302 to the same page on `localhost`
TO_SAME_HOST = "to-same-host"  # 302 to another path on this host and scheme, which is GOOD
DECLARED_HUGE = "declared-huge"  # Content-Length of 200 MB
ENDLESS = "endless"  # a body without length that never ends, sent as fast as it is read
TRICKLE = "trickle"  # a body without length, one byte at a time, never ending
MANY = "many"  # `many_files` files of the project
MIXED = "mixed"  # one good file among files each refused for its own reason

PAST = "2026-01-02T03:04:05Z"
# (file name, upload time) of the MIXED page, each but the first wrong in one way.
MIXED_FILES = (
    ("{n}-1.0.tar.gz", PAST),
    ("{n}-2.0.tar.gz", "2099-01-01T00:00:00Z"),  # in the future
    ("{n}-3.0.tar.gz", "2026-01-02T03:04:05"),  # no time zone
    ("../{n}-4.0.tar.gz", PAST),  # a path
    ("{n}-5.0\u0000.tar.gz", PAST),  # a NUL
    ("{n}-6.0" + "x" * 300 + ".tar.gz", PAST),  # 300 characters and more
    ("someone_else-1.0.tar.gz", PAST),  # another project's
)


def _file(name: str, upload_time: str) -> dict[str, Any]:
    return {"filename": name, "url": f"https://files.example/{name}", "hashes": {"sha256": "ab" * 32},
            "upload-time": upload_time}


def page(project: str, files: list[dict[str, Any]]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": files, "versions": []}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def do_GET(self) -> None:
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if len(parts) != 2 or parts[0] not in ("simple", "moved"):
            return self._send(404, b"{}")
        project = parts[1]
        behaviour = self.server.behaviours.get(project)
        if parts[0] == "moved":
            behaviour = GOOD if behaviour == TO_SAME_HOST else None
        with self.server.lock:
            self.server.asked.append(project)
        if behaviour is None:
            return self._send(404, b"{}")
        if behaviour == GOOD:
            return self._send(200, page(project, [_file(f"{project.replace('-', '_')}-1.0.tar.gz", PAST)]))
        if behaviour == MIXED:
            name = project.replace("-", "_")
            return self._send(200, page(project, [_file(f.format(n=name), t) for f, t in MIXED_FILES]))
        if behaviour == MANY:
            name = project.replace("-", "_")
            return self._send(200, page(project, [_file(f"{name}-{i}.0.tar.gz", PAST)
                                                  for i in range(self.server.many_files)]))
        if behaviour in (TO_HTTP, TO_OTHER_HOST, TO_SAME_HOST):
            return self._redirect(behaviour, project)
        if behaviour == DECLARED_HUGE:
            self._head(200, 200 * 1024 * 1024)
            return self._stream(b" " * 65536, pause=0.0, limit=1024 * 1024)
        self._head(200, None)
        if behaviour == ENDLESS:
            return self._stream(b" " * 65536, pause=0.0)
        return self._stream(b" ", pause=0.05)  # TRICKLE

    def _redirect(self, behaviour: str, project: str) -> None:
        port = self.server.server_address[1]
        target = {TO_HTTP: f"http://127.0.0.1:{self.server.plain_port}/simple/{project}/",
                  TO_OTHER_HOST: f"https://localhost:{port}/simple/{project}/",
                  TO_SAME_HOST: f"/moved/{project}/"}[behaviour]
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _head(self, status: int, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        if length is None:
            self.send_header("Connection", "close")  # the body ends when the connection does
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, body: bytes) -> None:
        self._head(status, len(body))
        self.wfile.write(body)

    def _stream(self, piece: bytes, *, pause: float, limit: int | None = None) -> None:
        sent = 0
        self.close_connection = True
        try:
            while not self.server.stopping.is_set() and (limit is None or sent < limit):
                self.wfile.write(piece)
                sent += len(piece)
                if pause:
                    time.sleep(pause)
        except OSError:  # the reader hung up: what it should do
            pass

    def log_message(self, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: TlsFiles, plain_port: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = tls.server_context()
        self.plain_port = plain_port
        self.behaviours: dict[str, str] = {}
        self.asked: list[str] = []
        self.many_files = 50
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        try:
            secured = self.context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()


class HostileIndex:
    """The hostile index on a free loopback port, and its plain-http twin (a listener that never
    answers: any connection to it is counted by `plain_connections`)."""

    def __init__(self, tls: TlsFiles):
        self.tls = tls  # its CA is what a client must trust (upstream_ca_bundle)
        self._plain = socket.create_server(("127.0.0.1", 0))
        self._plain.settimeout(0)
        self._plain_count = 0
        self._server = _Server(tls, self._plain.getsockname()[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-index", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/simple/"

    @property
    def plain_url(self) -> str:
        """The plain-http twin's address, shaped like `url`."""
        return f"http://127.0.0.1:{self._server.plain_port}/simple/"

    @property
    def asked(self) -> list[str]:
        """The projects whose page was asked for, in order."""
        with self._server.lock:
            return list(self._server.asked)

    @property
    def plain_connections(self) -> int:
        """Connections that reached the plain-http twin so far."""
        while True:
            try:
                conn, _ = self._plain.accept()
            except (BlockingIOError, OSError):
                return self._plain_count
            conn.close()
            self._plain_count += 1

    def behave(self, project: str, behaviour: str) -> None:
        self._server.behaviours[project] = behaviour

    def set_many_files(self, count: int) -> None:
        self._server.many_files = count

    def start(self) -> "HostileIndex":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._plain.close()

    def __enter__(self) -> "HostileIndex":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

"""A PEP 691 JSON simple API, over TLS, for the files in a folder of distributions.

Why it exists: pypiserver 2.4 serves its simple API only as PEP 503 HTML, which carries no upload
times, while the real index (Warehouse, which cannot run here) serves PEP 691 JSON with each
file's PEP 700 `upload-time`. This stand-in serves the files of the test upstream's package
folder in that JSON form, so the same files can be read in both formats. A file's upload time is
its modification time (when pypiserver stored it; a test sets another with `os.utime`). The
benchmark of `evidence refresh` uses it too, as an index that answers thousands of pages quickly.

    with JsonIndex(upstream.packages_dir, tls) as index:
        index.url            # https://127.0.0.1:PORT/simple/
        index.requests       # pages asked for so far
        index.connections    # TLS connections accepted so far

HTTP/1.1 with keep-alive, one thread per connection; the TLS handshake happens in that thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from testbed.tlsca import TlsFiles

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class StoredFile:
    filename: str
    version: str
    path: Path


def distribution_of(filename: str) -> tuple[str, str] | None:
    """(canonical project, version) a distribution's file name gives; None for other files."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidSdistFilename, InvalidWheelFilename):
        return None
    return canonicalize_name(name), str(version)


class Catalog:
    """The folder's distributions by project, read again when the folder changes (pypiserver
    keeps its files in one flat folder)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._projects: dict[str, list[StoredFile]] = {}
        self._digests: dict[tuple[Path, int, int], str] = {}

    def files(self, project: str) -> list[StoredFile] | None:
        with self._lock:
            stamp = self.folder.stat().st_mtime_ns
            if stamp != self._stamp:
                self._projects = self._scan()
                self._stamp = stamp
            return self._projects.get(project)

    def _scan(self) -> dict[str, list[StoredFile]]:
        found: dict[str, list[StoredFile]] = {}
        for entry in sorted(os.scandir(self.folder), key=lambda e: e.name):
            parsed = distribution_of(entry.name) if entry.is_file() else None
            if parsed is not None:
                found.setdefault(parsed[0], []).append(StoredFile(entry.name, parsed[1], Path(entry.path)))
        return found

    def describe(self, stored: StoredFile) -> dict[str, Any]:
        """The file's entry on a PEP 691 page (api-version 1.1: size and upload-time included)."""
        info = stored.path.stat()
        key = (stored.path, info.st_size, info.st_mtime_ns)
        with self._lock:
            digest = self._digests.get(key)
        if digest is None:
            digest = hashlib.sha256(stored.path.read_bytes()).hexdigest()
            with self._lock:
                self._digests[key] = digest
        uploaded = dt.datetime.fromtimestamp(info.st_mtime_ns / 1e9, dt.timezone.utc)
        return {
            "filename": stored.filename,
            "url": f"../../packages/{stored.filename}",
            "hashes": {"sha256": digest},
            "size": info.st_size,
            "upload-time": uploaded.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body leave in two writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK (40 ms) on every kept-alive request.
    disable_nagle_algorithm = True
    server: "_Server"

    def do_GET(self) -> None:
        self.server.count("requests")
        if self.server.latency:
            time.sleep(self.server.latency)
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if len(parts) != 2 or parts[0] != "simple":
            self._send(404, {"message": "not a project page"})
            return
        project = canonicalize_name(parts[1])
        if project != parts[1]:  # PEP 503: the canonical URL is the page's own
            self.send_response(301)
            self.send_header("Location", f"/simple/{project}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        stored = self.server.catalog.files(project)
        if not stored:
            self._send(404, {"message": f"no project {project}"})
            return
        self._send(200, {
            "meta": {"api-version": "1.1"},
            "name": project,
            "versions": sorted({s.version for s in stored}),
            "files": [self.server.catalog.describe(s) for s in stored],
        })

    def _send(self, status: int, page: dict[str, Any]) -> None:
        body = json.dumps(page).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], catalog: Catalog, context: ssl.SSLContext, latency: float):
        super().__init__(address, _Handler)
        self.catalog = catalog
        self.context = context
        self.latency = latency
        self.counts = {"requests": 0, "connections": 0}
        self._count_lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._count_lock:
            self.counts[what] += 1

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # In the connection's own thread, so a slow handshake holds up nobody else.
        try:
            secured = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.count("connections")
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()


class JsonIndex:
    """The stand-in on a free loopback port, in a background thread. `latency` (seconds) delays
    every answer, as a distant index's round trip would."""

    def __init__(self, folder: Path, tls: TlsFiles, *, host: str = "127.0.0.1", latency: float = 0.0):
        self._server = _Server((host, 0), Catalog(folder), tls.server_context(), latency)
        self._thread = threading.Thread(target=self._server.serve_forever, name="json-index", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}/simple/"

    @property
    def requests(self) -> int:
        return self._server.counts["requests"]

    @property
    def connections(self) -> int:
        return self._server.counts["connections"]

    def start(self) -> "JsonIndex":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "JsonIndex":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

"""The test upstream: a real pypiserver behind real TLS (gunicorn, gthread workers).

    with TlsPypiServer(tmp_path / "upstream") as upstream:
        upstream.url        # https://127.0.0.1:PORT/ (uploads also work on .legacy_url, /legacy/)
        upstream.ca_file    # the CA certificate clients must trust
        upstream.token      # the only credential that works, with username __token__
        upstream.simple_url # the simple API of what it stores (https://127.0.0.1:PORT/simple/)
        upstream.recordings()   # every request as received, in arrival order
        upstream.set_fault(503, "Service Unavailable", count=1)

Run one in the foreground with `python -m testbed.upstream --dir DIR [--port N]`.

pypiserver behaviour worth knowing: a duplicate upload is refused with `409 Conflict` (the reason
phrase is the generic one; the explanation is in the body), except that a User-Agent containing
"twine" gets `400 Bad Request` instead. `:action=submit` and `verify` are accepted and ignored
(200). A missing Authorization header gets `401` with `WWW-Authenticate: Basic realm="pypi"`,
a wrong one `403`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from testbed import recordings as _rec
from testbed import source_tree_environment
from testbed.recordings import Recording
from testbed.tlsca import TlsFiles, make_tls

TOKEN_USERNAME = "__token__"
PROBE_HEADER = "X-Testbed-Probe"


def make_token() -> str:
    """A random string shaped like a PyPI API token (`pypi-AgEIcHlwaS5vcmc...`)."""
    tail = base64.urlsafe_b64encode(secrets.token_bytes(60)).decode("ascii").rstrip("=")
    return "pypi-AgEIcHlwaS5vcmc" + tail


class UpstreamStartError(RuntimeError):
    """The upstream could not be started."""


class TlsPypiServer:
    """A pypiserver served by gunicorn over TLS, recording every request it receives."""

    def __init__(
        self,
        workdir: Path,
        *,
        token: str | None = None,
        ca: TlsFiles | None = None,
        workers: int = 2,
        threads: int = 8,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_alive: int = 5,
        start_timeout: float = 20.0,
    ):
        self.workdir = Path(workdir).resolve()
        self.token = token or make_token()
        self.workers = workers
        self.threads = threads
        self.host = host
        self.keep_alive = keep_alive
        self.start_timeout = start_timeout
        self.packages_dir = self.workdir / "packages"
        self.recordings_dir = self.workdir / "recordings"
        self.htpasswd_file = self.workdir / "htpasswd"
        self.control_file = self.workdir / "fault.json"
        self.log_file = self.workdir / "gunicorn.log"
        self._ca = ca
        self._requested_port = port
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    # Properties -------------------------------------------------------------------------

    @property
    def tls(self) -> TlsFiles:
        if self._ca is None:
            raise UpstreamStartError("the upstream has not been started")
        return self._ca

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that clients must trust."""
        return self.tls.ca_cert

    @property
    def url(self) -> str:
        """The upload URL, e.g. https://127.0.0.1:PORT/ (pypiserver takes uploads on `/`)."""
        if self.port is None:
            raise UpstreamStartError("the upstream has not been started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"

    @property
    def legacy_url(self) -> str:
        """The same upload endpoint under the real index's path: https://127.0.0.1:PORT/legacy/."""
        return self.url + "legacy/"

    @property
    def simple_url(self) -> str:
        """pypiserver's simple API (PEP 503 HTML), what the gateway's `index_url` points at."""
        return self.url + "simple/"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # Lifecycle --------------------------------------------------------------------------

    def _prepare(self) -> None:
        with warnings.catch_warnings():
            # passlib 1.7 imports the deprecated `crypt` module.
            warnings.simplefilter("ignore", DeprecationWarning)
            from passlib.apache import HtpasswdFile

        for directory in (self.workdir, self.packages_dir, self.recordings_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self._ca is None:
            self._ca = make_tls(self.workdir / "tls")
        htpasswd = HtpasswdFile(str(self.htpasswd_file), new=True)
        htpasswd.set_password(TOKEN_USERNAME, self.token)
        htpasswd.save()
        (self.workdir / "token").write_text(self.token + "\n", "utf-8")

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._requested_port))
        listener.listen(512)
        listener.set_inheritable(True)
        return listener

    def command(self, fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:testbed.upstream_gunicorn",
            "--bind",
            f"fd://{fd}",
            "--worker-class",
            "gthread",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--keep-alive",
            str(self.keep_alive),
            "--certfile",
            str(self.tls.server_cert),
            "--keyfile",
            str(self.tls.server_key),
            "--graceful-timeout",
            "3",
            "--timeout",
            "120",
            "--access-logfile",
            "-",
            "--error-logfile",
            "-",
            "testbed.upstream_app:make_app()",
        ]

    def environment(self) -> dict[str, str]:
        env = source_tree_environment()
        env.update(
            TESTBED_UPSTREAM_PACKAGES=str(self.packages_dir),
            TESTBED_UPSTREAM_HTPASSWD=str(self.htpasswd_file),
            TESTBED_UPSTREAM_RECORDINGS=str(self.recordings_dir),
            TESTBED_UPSTREAM_CONTROL=str(self.control_file),
            TESTBED_UPSTREAM_OWNER_PID=str(os.getpid()),
        )
        return env

    def start(self) -> "TlsPypiServer":
        if self.running:
            return self
        self._prepare()
        if self.port is not None:
            # A restart keeps the URL clients were given.
            self._requested_port = self.port
        listener = self._bind()
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        try:
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    self.command(fd),
                    env=self.environment(),
                    cwd=str(self.workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),
                    start_new_session=True,
                )
        finally:
            # Only gunicorn keeps the listening socket, so a stopped upstream refuses connections.
            listener.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        context = self.tls.client_context()
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise UpstreamStartError(
                    f"gunicorn exited with status {self._proc.returncode if self._proc else '?'}"
                    f"\n{self.log_tail()}"
                )
            try:
                connection = http.client.HTTPSConnection(
                    self.host, self.port, context=context, timeout=2
                )
                try:
                    connection.request("GET", "/health", headers={PROBE_HEADER: "1"})
                    response = connection.getresponse()
                    response.read()
                    if response.status == 200:
                        self._warm_up(context)
                        return
                    last_error = UpstreamStartError(f"health check answered {response.status}")
                finally:
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                last_error = exc
            time.sleep(0.1)
        raise UpstreamStartError(
            f"upstream did not answer over TLS within {self.start_timeout:.0f} s "
            f"({last_error!r})\n{self.log_tail()}"
        )

    def _warm_up(self, context: ssl.SSLContext) -> None:
        """Send a few authenticated (unrecorded) requests so each worker initialises its password
        checking now: pypiserver's passlib set-up is lazy and the first concurrent uploads of a
        fresh worker can otherwise race it and get a 500."""
        auth = "Basic " + base64.b64encode(f"{TOKEN_USERNAME}:{self.token}".encode()).decode()
        for _ in range(4 * self.workers):
            connection = http.client.HTTPSConnection(self.host, self.port, context=context, timeout=5)
            try:
                connection.request("POST", "/", body=b"", headers={PROBE_HEADER: "1", "Authorization": auth})
                connection.getresponse().read()
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGINT is gunicorn's quick shutdown: no waiting for idle keep-alive connections.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def __enter__(self) -> "TlsPypiServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text("utf-8", "replace")
        except OSError:
            return "(no gunicorn log)"
        return "\n".join(text.splitlines()[-lines:])

    # Inspection -------------------------------------------------------------------------

    def recordings(self) -> list[Recording]:
        """Every request received so far, in arrival order."""
        return _rec.read_recordings(self.recordings_dir)

    def wait_recordings(self, count: int, timeout: float = 10.0) -> list[Recording]:
        """Wait until at least `count` requests have been answered, then return all records."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.recordings()
            done = [r for r in records if r.status is not None]
            if len(done) >= count or time.monotonic() >= deadline:
                return records
            time.sleep(0.05)

    def clear_recordings(self) -> None:
        _rec.clear_recordings(self.recordings_dir)

    def set_fault(
        self,
        status: int | None = None,
        reason: str | None = None,
        count: int | None = None,
        delay: float | None = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests (all, if None) with `status reason` (and extra
        response `headers`) without forwarding them to pypiserver, and/or sleep `delay` seconds
        before answering."""
        _rec.write_fault(
            self.control_file, status=status, reason=reason, count=count, delay=delay, body=body,
            headers=headers,
        )

    def clear_fault(self) -> None:
        _rec.clear_fault(self.control_file)

    def files(self) -> dict[str, str]:
        """Stored files: name (relative to packages_dir) -> sha256 hex digest."""
        result = {}
        for path in sorted(self.packages_dir.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                result[path.relative_to(self.packages_dir).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
        return result

    def client_context(self) -> ssl.SSLContext:
        return self.tls.client_context()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.upstream",
        description="Run the TLS pypiserver test upstream in the foreground until Ctrl-C.",
    )
    parser.add_argument("--dir", required=True, type=Path, help="working directory")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=None, help="API token (default: a new random one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    server = TlsPypiServer(
        args.dir,
        token=args.token,
        workers=args.workers,
        threads=args.threads,
        host=args.host,
        port=args.port,
    )
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(f"url:   {server.url}", flush=True)
        print(f"ca:    {server.ca_file}", flush=True)
        print(f"token: {server.token}", flush=True)
        print(f"log:   {server.log_file}", flush=True)
        while not stop and server.running:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

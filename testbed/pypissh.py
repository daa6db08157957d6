"""A re-creation of the legacy `pypissh` client for Python 3.11's stdlib distutils.

The real pypissh 1.4 is Python 2 only (it patches `httplib` and `urllib2`), so it cannot carry a
Python 3 distutils upload; the suite runs the real one on Python 2.7 (tests/test_real_pypissh.py,
testbed/legacyclients.py) and this re-creation only for Python 3's distutils, whose requests differ
(CRLF bodies, the field order, the BLAKE2 bug) and which users who moved to Python 3 sent.

    cd legacy-project && python -m testbed.pypissh sdist upload
    python -m testbed.pypissh register sdist upload

The historic client patched the HTTP library so that every request `setup.py register/upload`
made went through `ssh -T -l submit <host>` instead of a TCP connection: the raw HTTP request was
written to ssh's stdin and the HTTP response read back from ssh's stdout, while ssh's stderr went
straight to the user's terminal. This module does the same at the `http.client` connection level,
so distutils and urllib build exactly the bytes they would send over TCP (HTTPS URLs included,
without any TLS: the SSH session is the secure channel) and parse the answer themselves.

Like the real client it never sends EOF before reading the answer: the server has to frame the
request by its Content-Length.

Environment:
    PYPISSH_SSH   the ssh command line (split with shlex; default `ssh`)
    PYPISSH_HOST  host to connect to (default: the host name of the repository URL)
    PYPISSH_USER  remote user name (default `submit`)

The stdlib distutils is required (not setuptools' copy, which `distutils-precedence.pth` puts in
its place unless SETUPTOOLS_USE_DISTUTILS=stdlib is set when the interpreter starts); the module
re-executes itself with that variable set when needed.
"""

from __future__ import annotations

import http.client
import io
import os
import runpy
import shlex
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Sequence

from testbed import source_tree_environment

DEFAULT_USER = "submit"
REAP_TIMEOUT = 30.0
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


def ssh_command(host: str) -> list[str]:
    """The command line that opens one session to `host` (before PYPISSH_HOST overrides it)."""
    base = shlex.split(os.environ.get("PYPISSH_SSH") or "ssh")
    user = os.environ.get("PYPISSH_USER") or DEFAULT_USER
    target = os.environ.get("PYPISSH_HOST") or host
    return [*base, "-T", "-l", user, target]


class _SessionReader(io.BufferedReader):
    """ssh's stdout as the buffered file http.client reads the response from."""

    def __init__(self, raw, on_close):
        super().__init__(raw)
        self._on_close = on_close

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()


class SshSocket:
    """Just enough of a socket for http.client, carried by an `ssh` subprocess.

    sendall() writes to ssh's stdin, makefile("rb") reads ssh's stdout, close() closes stdin (the
    EOF comes only after the response has been read, as with the real client) and reaps ssh once
    the response file is closed too. ssh's stderr is inherited, not captured.
    """

    def __init__(self, argv: Sequence[str]):
        self.argv = list(argv)
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
            )
        except OSError as exc:
            raise OSError(exc.errno, f"cannot run {self.argv[0]!r}: {exc.strerror}") from exc
        self._closed = False
        self._reader: _SessionReader | None = None
        self._reader_open = False

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def sendall(self, data) -> None:
        if self._closed:
            raise OSError("ssh session is closed")
        view = memoryview(data).cast("B")
        stdin = self._proc.stdin
        while view:
            written = stdin.write(view)
            if written is None:
                written = 0
            view = view[written:]

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    def makefile(self, mode: str = "rb", *args, **kwargs):
        if "r" not in mode or "b" not in mode:
            raise ValueError(f"unsupported makefile mode {mode!r}")
        if self._reader is not None:
            raise OSError("one response per ssh session")
        self._reader = _SessionReader(self._proc.stdout, self._reader_closed)
        self._reader_open = True
        return self._reader

    def settimeout(self, timeout) -> None:
        pass

    def setsockopt(self, *args) -> None:
        pass

    def fileno(self) -> int:
        return self._proc.stdout.fileno()

    def _reader_closed(self) -> None:
        self._reader_open = False
        self._reap_if_done()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._reap_if_done()

    def _reap_if_done(self) -> None:
        if not self._closed or self._reader_open:
            return
        if self._proc.stdout is not None and self._reader is None:
            self._proc.stdout.close()
        try:
            self._proc.wait(timeout=REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _connect_over_ssh(self: http.client.HTTPConnection) -> None:
    """Replacement for HTTPConnection.connect / HTTPSConnection.connect."""
    host = getattr(self, "_tunnel_host", None) or self.host
    self.sock = SshSocket(ssh_command(host))


_installed = False


def install() -> None:
    """Route every http.client connection (http and https) through ssh."""
    global _installed
    if _installed:
        return
    http.client.HTTPConnection.connect = _connect_over_ssh
    http.client.HTTPSConnection.connect = _connect_over_ssh
    for name in _PROXY_VARIABLES:
        os.environ.pop(name, None)
        os.environ.pop(name.upper(), None)
    _installed = True


def _distutils_file() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import distutils

    return distutils.__file__ or ""


def uses_stdlib_distutils() -> bool:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    location = Path(_distutils_file()).resolve()
    return location.is_relative_to(stdlib)


def _reexec_with_stdlib_distutils(args: Sequence[str]) -> None:
    env = source_tree_environment()
    env["SETUPTOOLS_USE_DISTUTILS"] = "stdlib"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "testbed.pypissh", *args], env)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not uses_stdlib_distutils():
        if os.environ.get("SETUPTOOLS_USE_DISTUTILS") == "stdlib":
            print(
                f"pypissh: need the standard library's distutils, got {_distutils_file()}",
                file=sys.stderr,
            )
            return 2
        _reexec_with_stdlib_distutils(args)
    if not Path("setup.py").is_file():
        print("pypissh: no setup.py in the current directory", file=sys.stderr)
        return 2
    install()
    here = os.getcwd()
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    sys.argv = ["setup.py", *args]
    try:
        runpy.run_path("setup.py", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

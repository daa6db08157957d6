"""The OpenSSH mode's shim: the forced command sshd runs per session.

It imports the standard library only and does no work of its own: it connects to the local
replica's `shim_socket`, says who the session is for (the account and key from the forced
command, SSH_ORIGINAL_COMMAND, the client's address from SSH_CONNECTION), relays stdin there and
writes what the replica answers to stdout and stderr, and exits with the replica's exit status.
The replica runs the session with the same runner as its own SSH sessions (gateway/ssh/shimserver.py).

When no replica answers, the shim does not run the session itself: that would hide an outage
behind a path a hundred times slower, and would need the whole gateway (database, secret key)
readable by the session user. It tells the user in one line, answers a legacy client's request
with `503` so distutils prints the reason, and exits 1.

Two ways to start it, one code: gateway/ssh/shimexec.py, the forced command the replica writes
into `authorized_keys_file`, with every value the shim needs on its command line (`script_main`),
and `pypissh-gateway ... stdio --account NAME` (the console script, which reads the configuration
for `shim_socket`). `_socket` rather than `socket`, whose enum classes cost more than the whole
interpreter start.
"""

from __future__ import annotations

import _socket
import os
import select

from gateway.ssh import shimwire

TYPE_CHECKING = False  # `typing` is for type checkers only here (see gateway/loginsettings.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Protocol

    class ShimSettings(Protocol):
        @property
        def shim_socket(self) -> str: ...
        @property
        def read_timeout(self) -> float: ...
        @property
        def max_upload_bytes(self) -> int: ...

STDIN, STDOUT, STDERR = 0, 1, 2
# How much of a request the shim takes in when there is no replica to hand it to: the head, and
# a body up to the upload limit; it is read only so the client gets to read the answer.
MAX_HEAD = 64 * 1024


def client_address(environ: Mapping[str, str]) -> str:
    """The client's address from sshd's SSH_CONNECTION ("client port server port")."""
    parts = (environ.get("SSH_CONNECTION") or "").split()
    return parts[0] if parts else ""


def run_shim(settings: ShimSettings, account: str, fingerprint: str | None, environ: Mapping[str, str]) -> int:
    """One session, handed to the replica; returns the exit status."""
    command = (environ.get("SSH_ORIGINAL_COMMAND") or "").strip()
    header = shimwire.SessionHeader(account, fingerprint or "", command, client_address(environ))
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(settings.shim_socket)
        except OSError as exc:
            return no_replica(settings, command, exc)
        # A replica that refused us at once closed without reading: its answer is waiting to be
        # read, and stdin has nowhere to go.
        header_sent = _send_all(sock, shimwire.frame(shimwire.SESSION, header.encode()))
        return Relay(sock, relay_stdin=header_sent and not command).run()
    finally:
        sock.close()


class Relay:
    """stdin to the replica, its frames to stdout, stderr and the exit status, in one loop."""

    def __init__(self, sock: _socket.socket, *, relay_stdin: bool):
        self.sock = sock
        self.stdin_open = relay_stdin
        self.wrote_stdout = False
        self._out_closed = False
        self._frames = shimwire.FrameBuffer()

    def run(self) -> int:
        try:
            while True:
                sock = self.sock.fileno()
                readable, _, _ = select.select([sock, STDIN] if self.stdin_open else [sock], [], [])
                if STDIN in readable:
                    self._pass_stdin()
                if sock in readable:
                    status = self._take_frames()
                    if status is not None:
                        return status
        except (OSError, shimwire.WireError) as exc:
            return self._lost(exc)

    def _pass_stdin(self) -> None:
        data = os.read(STDIN, shimwire.CHUNK)
        try:
            if data:
                self.sock.sendall(shimwire.frame(shimwire.STDIN, data))
            else:
                self.stdin_open = False
                self.sock.sendall(shimwire.frame(shimwire.STDIN_EOF))
        except OSError:
            # The replica answered and closed without reading the rest (a refused request): its
            # answer is still in our receive buffer.
            self.stdin_open = False

    def _take_frames(self) -> int | None:
        try:
            data = self.sock.recv(shimwire.CHUNK * 2)
        except ConnectionResetError:
            data = b""
        if not data:
            return self._lost(None)
        for kind, payload in self._frames.feed(data):
            if kind == shimwire.EXIT:
                return int(payload) if payload.isdigit() else 1
            if kind == shimwire.STDOUT:
                self.wrote_stdout = True
                self._write(STDOUT, payload)
            elif kind == shimwire.STDERR:
                self._write(STDERR, payload)
        return None

    def _write(self, fd: int, data: bytes) -> None:
        if self._out_closed:
            return
        try:
            while data:
                data = data[os.write(fd, data):]
        except BrokenPipeError:  # the client went away; keep going to learn the exit status
            self._out_closed = True

    def _lost(self, problem: Exception | None) -> int:
        """The replica went away before the exit status: it may have forwarded the upload."""
        from gateway.ssh import user_texts

        _log(f"the replica closed a session before it ended ({problem or 'end of stream'})")
        reason = user_texts.shim_replica_lost()
        self._write(STDERR, user_texts.refusal_line(503, reason).encode())
        if not self.wrote_stdout:
            self._write(STDOUT, http_answer(503, reason))
        return 1


def no_replica(settings: ShimSettings, command: str, problem: OSError) -> int:
    """No replica to hand the session to: one line for the user, 503 for a legacy client."""
    from gateway import phrases
    from gateway.ssh import user_texts

    if isinstance(problem, PermissionError):  # the replica may well run: say what is wrong
        _log(f"permission denied on {settings.shim_socket} for uid {os.getuid()}; the socket serves "
             "shim_user and its group only")
        reason = user_texts.shim_socket_denied(settings.shim_socket)
    else:
        _log(f"cannot reach the replica at {settings.shim_socket}: {problem.strerror or problem}; "
             "is `pypissh-gateway serve` running with openssh_mode = true?")
        reason = user_texts.shim_no_replica()
    if command:
        _write_all(STDERR, f"{phrases.PROGRAM}: {reason}\n".encode())
        return 1
    if drain_request(STDIN, settings.read_timeout, settings.max_upload_bytes):
        _write_all(STDERR, user_texts.refusal_line(503, reason).encode())
        _write_all(STDOUT, http_answer(503, reason))
    else:
        _write_all(STDERR, f"{phrases.PROGRAM}: {reason}\n".encode())
    return 1


def drain_request(fd: int, idle_timeout: float, max_body: int) -> bool:
    """Read one HTTP request from `fd` and drop it (its head, then Content-Length bytes, within
    limits); True if any request bytes came. A legacy client writes its whole request before it
    reads the answer, so the request must be taken in for the answer to be seen."""
    head = bytearray()
    while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < MAX_HEAD:
        data = _read_within(fd, idle_timeout)
        if not data:
            return bool(head)
        head += data
    end = min((i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0), default=len(head))
    remaining = content_length(bytes(head[:end])) - (len(head) - end)
    while 0 < remaining <= max_body + MAX_HEAD:
        data = _read_within(fd, idle_timeout)
        if not data:
            break
        remaining -= len(data)
    return True


def content_length(head: bytes) -> int:
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0


def http_answer(status: int, reason: str) -> bytes:
    """A legacy client's answer: distutils prints `Upload failed (<status>): <reason>`."""
    from gateway.upload.answer import http_answer as answer

    return answer(status, reason.encode("utf-8"), (reason + "\n").encode("utf-8"))


def _send_all(sock: _socket.socket, data: bytes) -> bool:
    """Whether all of `data` went to the replica (False: it has closed its end)."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _read_within(fd: int, timeout: float) -> bytes:
    readable, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, shimwire.CHUNK) if readable else b""


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def _log(text: str) -> None:
    """The operator's side of a failure: syslog (stderr is the user's terminal)."""
    import syslog

    syslog.openlog("pypissh-gateway", syslog.LOG_PID, syslog.LOG_AUTH)
    syslog.syslog(syslog.LOG_WARNING, text)


class ScriptSettings:
    """What the shim reads, from its own command line (see the module notes)."""

    __slots__ = ("max_upload_bytes", "read_timeout", "shim_socket")

    def __init__(self, shim_socket: str, read_timeout: float, max_upload_bytes: int):
        self.shim_socket = shim_socket
        self.read_timeout = read_timeout
        self.max_upload_bytes = max_upload_bytes


USAGE = ("usage: shimexec.py --socket PATH --account NAME [--fingerprint FP] [--read-timeout SECONDS] "
         "[--max-upload-bytes N]")


def script_main(argv: list[str], environ: Mapping[str, str]) -> int:
    """The shim run as a file: options as `--name value` pairs, all written by the replica. (No
    argparse: it would cost the shim as much as its interpreter start.)"""
    given: dict[str, str] = {}
    if len(argv) % 2:
        return _usage("every option takes a value")
    for name, value in zip(argv[::2], argv[1::2], strict=True):  # even length, checked above
        if name not in ("--socket", "--account", "--fingerprint", "--read-timeout", "--max-upload-bytes"):
            return _usage(f"unknown option {name}")
        given[name] = value
    if "--socket" not in given or not given.get("--account"):
        return _usage("--socket and --account are required")
    if "--read-timeout" not in given or "--max-upload-bytes" not in given:  # the replica writes both
        from gateway import loginsettings

        given.setdefault("--read-timeout", str(loginsettings.READ_TIMEOUT))
        given.setdefault("--max-upload-bytes", str(loginsettings.MAX_UPLOAD_BYTES))
    try:
        settings = ScriptSettings(given["--socket"], float(given["--read-timeout"]), int(given["--max-upload-bytes"]))
    except ValueError:
        return _usage("--read-timeout and --max-upload-bytes take numbers")
    return run_shim(settings, given["--account"], given.get("--fingerprint"), environ)


def _usage(problem: str) -> int:
    _write_all(STDERR, f"shimexec.py: {problem}\n{USAGE}\n".encode())
    return 2

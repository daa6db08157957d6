"""On-disk formats shared by the test upstream's WSGI middleware and the tests that inspect it.

Recordings: one `<name>.json` per request (metadata) plus `<name>.body` (the raw body), written
atomically with names that sort in arrival order. Faults: one control JSON file, read and updated
under a file lock by every gunicorn worker, so a count of injected failures is exact even with
several worker processes and threads.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import fcntl
import http
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

_counter_lock = threading.Lock()
_counter = 0


class FormError(ValueError):
    """The recorded body is not a well-formed multipart/form-data document."""


FormField = tuple[str, "str | bytes", "str | None"]


@dataclass
class Recording:
    """One request as the upstream received it."""

    name: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    remote_addr: str
    body_complete: bool
    content_length: int | None
    faulted: bool
    fault: dict[str, Any] | None
    status: str | None
    time: float
    body: bytes = field(repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    @property
    def status_code(self) -> int | None:
        """The numeric status the upstream answered (None if not known yet)."""
        return int(self.status.split(" ", 1)[0]) if self.status else None

    def basic_auth(self) -> tuple[str, str] | None:
        """The (username, password) of a Basic Authorization header, or None."""
        value = self.header("Authorization")
        if not value or not value.lower().startswith("basic "):
            return None
        decoded = base64.b64decode(value[6:].strip()).decode("utf-8", "replace")
        user, _, password = decoded.partition(":")
        return user, password

    def form(self) -> list[FormField]:
        """The multipart/form-data body as an ordered list of (name, value, filename).

        Parsed strictly with the stdlib `email` parser: any defect (missing boundary, missing
        close delimiter, a part without a Content-Disposition name...) raises FormError. File
        parts (those with a filename) give bytes; other parts give str (decoded as UTF-8).
        """
        return parse_form(self.header("Content-Type") or "", self.body)

    def fields(self) -> dict[str, list[str | bytes]]:
        """The form as a mapping name -> list of values (order of repeats kept)."""
        result: dict[str, list[str | bytes]] = {}
        for name, value, _filename in self.form():
            result.setdefault(name, []).append(value)
        return result


def parse_form(content_type: str, body: bytes) -> list[FormField]:
    """Parse a multipart/form-data body strictly; see Recording.form()."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise FormError(f"not multipart/form-data: {content_type!r}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(head + body)
    if message.defects:
        raise FormError(f"malformed multipart body: {message.defects!r}")
    if not message.is_multipart():
        raise FormError("body has no parts")
    result: list[FormField] = []
    for part in message.iter_parts():
        if part.defects:
            raise FormError(f"malformed part: {part.defects!r}")
        if part.get_content_disposition() != "form-data":
            raise FormError(f"part without form-data disposition: {part.items()!r}")
        name = part.get_param("name", header="content-disposition")
        if name is None:
            raise FormError("part without a name")
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True)
        if payload is None:
            payload = b""
        if filename is None:
            value: str | bytes = payload.decode("utf-8")
        else:
            value = payload
        result.append((str(name), value, None if filename is None else str(filename)))
    return result


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def new_record_name() -> str:
    """A unique file stem that sorts in arrival order across processes."""
    global _counter
    with _counter_lock:
        _counter += 1
        count = _counter
    return f"{time.time_ns():020d}-{os.getpid():07d}-{count:06d}"


def write_recording(directory: Path, meta: dict[str, Any], body: bytes | None = None) -> None:
    """Write (or atomically replace) one record; the body file is written first."""
    name = meta["name"]
    if body is not None:
        _atomic_write(directory / f"{name}.body", body)
    _atomic_write(directory / f"{name}.json", json.dumps(meta, indent=1).encode("utf-8"))


def read_recordings(directory: Path) -> list[Recording]:
    """All complete records in `directory`, in arrival order."""
    records = []
    for meta_path in sorted(Path(directory).glob("[0-9]*.json")):
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            body = meta_path.with_suffix(".body").read_bytes()
        except (OSError, ValueError):
            continue
        records.append(
            Recording(
                name=meta["name"],
                method=meta["method"],
                path=meta["path"],
                query=meta["query"],
                headers=meta["headers"],
                remote_addr=meta["remote_addr"],
                body_complete=meta["body_complete"],
                content_length=meta["content_length"],
                faulted=meta["faulted"],
                fault=meta.get("fault"),
                status=meta.get("status"),
                time=meta["time"],
                body=body,
            )
        )
    return records


def clear_recordings(directory: Path) -> None:
    for path in Path(directory).iterdir():
        if path.is_file():
            path.unlink(missing_ok=True)


# Fault injection ---------------------------------------------------------------------------


@contextmanager
def _locked(control_file: Path) -> Iterator[None]:
    lock_path = control_file.with_name(control_file.name + ".lock")
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_fault(
    control_file: Path,
    *,
    status: int | None = None,
    reason: str | None = None,
    count: int | None = None,
    delay: float | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Install a fault: answer `status reason` (and/or sleep `delay` seconds) for the next
    `count` requests (every request if count is None), with extra response `headers`."""
    fault: dict[str, Any] = {}
    if status is not None:
        fault["status"] = int(status)
        if reason is None:
            try:
                reason = http.HTTPStatus(int(status)).phrase
            except ValueError:
                reason = "Injected Fault"
        fault["reason"] = reason
        if body is not None:
            fault["body"] = body
        if headers:
            fault["headers"] = dict(headers)
    if delay is not None:
        fault["delay"] = float(delay)
    if count is not None:
        fault["count"] = int(count)
    if not fault.keys() - {"count"}:
        raise ValueError("a fault needs a status or a delay")
    with _locked(control_file):
        if count is not None and count <= 0:
            control_file.unlink(missing_ok=True)
        else:
            _atomic_write(control_file, json.dumps(fault).encode("utf-8"))
    return fault


def clear_fault(control_file: Path) -> None:
    with _locked(control_file):
        control_file.unlink(missing_ok=True)


def take_fault(control_file: Path) -> dict[str, Any] | None:
    """The fault to apply to the current request (consuming one from its count), or None."""
    if not control_file.exists():
        return None
    with _locked(control_file):
        try:
            fault = json.loads(control_file.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        count = fault.get("count")
        if count is not None:
            if count <= 1:
                control_file.unlink(missing_ok=True)
            else:
                remaining = dict(fault, count=count - 1)
                _atomic_write(control_file, json.dumps(remaining).encode("utf-8"))
        fault.pop("count", None)
        return fault

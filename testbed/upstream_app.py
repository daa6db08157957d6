"""The WSGI application of the test upstream: a real pypiserver behind a recording middleware.

gunicorn loads it as `testbed.upstream_app:make_app()`; the configuration comes from environment
variables set by `testbed.upstream.TlsPypiServer`:

    TESTBED_UPSTREAM_PACKAGES    directory pypiserver stores uploads in
    TESTBED_UPSTREAM_HTPASSWD    htpasswd file (user `__token__`, password = the API token)
    TESTBED_UPSTREAM_RECORDINGS  directory for request records
    TESTBED_UPSTREAM_CONTROL     fault-injection control file (JSON; may be absent)

Uploads are accepted on `/` (pypiserver's own path) and on `/legacy/` (the real index's path).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from testbed import recordings

CHUNK = 1 << 16
LEGACY_PATHS = ("/legacy/", "/legacy")


def _headers_from_environ(environ: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if value:
            headers[key.replace("_", "-").title()] = value
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").title()] = value
    return headers


def _read_body(environ: dict[str, Any]) -> tuple[bytes, bool, int | None]:
    """Read the whole request body; returns (body, complete, declared length)."""
    stream = environ.get("wsgi.input")
    raw_length = environ.get("CONTENT_LENGTH") or ""
    declared: int | None = None
    if raw_length.strip():
        try:
            declared = int(raw_length)
        except ValueError:
            declared = None
    chunks: list[bytes] = []
    received = 0
    complete = True
    if stream is None:
        return b"", declared in (None, 0), declared
    try:
        while declared is None or received < declared:
            want = CHUNK if declared is None else min(CHUNK, declared - received)
            chunk = stream.read(want)
            if not chunk:
                break
            chunks.append(chunk)
            received += len(chunk)
    except Exception:
        complete = False
    if declared is not None and received != declared:
        complete = False
    return b"".join(chunks), complete, declared


class RecordingMiddleware:
    """Records every request, applies injected faults, then hands the request to `app`."""

    def __init__(self, app: Callable, recordings_dir: Path, control_file: Path):
        self.app = app
        self.recordings_dir = Path(recordings_dir)
        self.control_file = Path(control_file)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_X_TESTBED_PROBE"):
            # The readiness probe of TlsPypiServer.start(): not part of any test's traffic.
            return self.app(environ, start_response)
        arrived = time.time()
        name = recordings.new_record_name()
        body, complete, declared = _read_body(environ)
        fault = recordings.take_fault(self.control_file) if complete else None
        meta: dict[str, Any] = {
            "name": name,
            "time": arrived,
            "method": environ.get("REQUEST_METHOD", ""),
            "path": environ.get("PATH_INFO", ""),
            "raw_uri": environ.get("RAW_URI"),
            "query": environ.get("QUERY_STRING", ""),
            "headers": _headers_from_environ(environ),
            "remote_addr": environ.get("REMOTE_ADDR", ""),
            "body_complete": complete,
            "content_length": declared,
            "body_size": len(body),
            "faulted": fault is not None,
            "fault": fault,
            "status": None,
        }
        recordings.write_recording(self.recordings_dir, meta, body)

        if not complete:
            # The client went away (or lied about the length): never store a partial upload.
            meta["status"] = "400 Bad Request"
            recordings.write_recording(self.recordings_dir, meta)
            payload = b"incomplete request body\n"
            start_response(
                "400 Bad Request",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))],
            )
            return [payload]

        if fault and fault.get("delay"):
            time.sleep(float(fault["delay"]))

        if fault and fault.get("status"):
            status = f"{int(fault['status'])} {fault.get('reason', '')}".rstrip()
            text = fault.get("body")
            if text is None:
                text = f"<html><body><h1>{status}</h1></body></html>\n"
            payload = text.encode("utf-8")
            meta["status"] = status
            recordings.write_recording(self.recordings_dir, meta)
            start_response(
                status,
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(payload))),
                 *fault.get("headers", {}).items()],
            )
            return [payload]

        if environ.get("PATH_INFO") in LEGACY_PATHS:
            # Serve uploads on the real index's path too, so clients can use the same URL shape.
            environ["PATH_INFO"] = "/"
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        seen: dict[str, str] = {}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = status
            return start_response(status, headers, exc_info)

        result = self.app(environ, recording_start_response)
        meta["status"] = seen.get("status")
        recordings.write_recording(self.recordings_dir, meta)
        return result


def make_app() -> Callable:
    """Build the recording pypiserver app from the TESTBED_UPSTREAM_* environment variables."""
    import pypiserver

    packages = Path(os.environ["TESTBED_UPSTREAM_PACKAGES"])
    htpasswd = Path(os.environ["TESTBED_UPSTREAM_HTPASSWD"])
    recordings_dir = Path(os.environ["TESTBED_UPSTREAM_RECORDINGS"])
    control = Path(os.environ["TESTBED_UPSTREAM_CONTROL"])
    inner = pypiserver.app(
        roots=[packages],
        password_file=str(htpasswd),
        authenticate=["update"],
        disable_fallback=True,
        overwrite=False,
    )
    return RecordingMiddleware(inner, recordings_dir, control)

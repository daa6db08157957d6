"""Byte-exact legacy upload requests, as the historic clients wrote them.

`python3_upload` mirrors Python 3.11's distutils `upload` (CRLF, content before the digests, the
64-byte BLAKE2 bug); `python2_upload` mirrors Python 2's (bare LF, dict order so `content` may come
first, `;filename=` without a space, the misspelt `protcol_version`, only md5, no User-Agent on
old versions, and the extra "\\n" after a value ending in "\\r").
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import time
from typing import Iterable, Sequence

BOUNDARY = "--------------GHSKFJDLGDS7543FJKLFHRE75642756743254"

Field = tuple[str, "str | bytes | tuple[str, bytes]"]


def make_sdist(name: str, version: str, *, metadata_version: str = "1.1",
               classifiers: Sequence[str] = ("Programming Language :: Python :: 3",),
               extra_headers: str = "", pad: bytes = b"", top: str | None = None,
               encoding: str = "utf-8", description: str = "UNKNOWN") -> bytes:
    """A distutils-style sdist (`<name>-<version>/PKG-INFO` plus one module) as .tar.gz bytes;
    PKG-INFO is written in `encoding` (Python 2's distutils wrote byte strings as they were), the
    description folded as distutils folds it (8 spaces before each continuation line)."""
    folded = "\n        ".join(description.split("\n"))
    top = top or f"{name}-{version}"
    pkg_info = (
        f"Metadata-Version: {metadata_version}\nName: {name}\nVersion: {version}\n"
        "Summary: A legacy package\nHome-page: UNKNOWN\nAuthor: Old Timer\n"
        f"Author-email: old@example.org\nLicense: UNKNOWN\nDescription: {folded}\nPlatform: UNKNOWN\n"
        + "".join(f"Classifier: {c}\n" for c in classifiers) + extra_headers
    ).encode(encoding)
    files = {f"{top}/PKG-INFO": pkg_info, f"{top}/setup.py": b"from distutils.core import setup\n",
             f"{top}/mod.py": b"x = 1\n" + pad}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def digests(content: bytes) -> dict[str, str]:
    return {
        "md5_digest": hashlib.md5(content).hexdigest(),
        "sha256_digest": hashlib.sha256(content).hexdigest(),
        # The distutils bug: a 64-byte BLAKE2b (128 hex chars) instead of BLAKE2b-256.
        "blake2_256_digest": hashlib.blake2b(content).hexdigest(),
    }


def python3_form(name: str, version: str, filename: str, content: bytes, **overrides: str) -> list[Field]:
    fields: list[Field] = [
        (":action", "file_upload"), ("protocol_version", "1"), ("name", name), ("version", version),
        ("content", (filename, content)), ("filetype", "sdist"), ("pyversion", ""),
        ("metadata_version", "1.0"), ("summary", "A legacy package"), ("home_page", "None"),
        ("author", "Old Timer"), ("author_email", "old@example.org"), ("license", "None"),
        ("description", "None"), ("keywords", ""), ("platform", "None"),
        ("classifiers", "Programming Language :: Python :: 3"), ("download_url", "None"),
        ("provides", ""), ("requires", ""), ("obsoletes", ""), ("comment", ""),
    ]
    fields += list(digests(content).items())
    return [(key, overrides.get(key, value)) if not isinstance(value, tuple) else (key, value)
            for key, value in fields]


def python3_body(fields: Iterable[Field]) -> bytes:
    sep = b"\r\n--" + BOUNDARY.encode()
    body = io.BytesIO()
    for key, value in fields:
        title = f'\r\nContent-Disposition: form-data; name="{key}"'
        if isinstance(value, tuple):
            title += f'; filename="{value[0]}"'
            data = value[1]
        else:
            data = value.encode("utf-8") if isinstance(value, str) else value
        body.write(sep)
        body.write(title.encode("utf-8"))
        body.write(b"\r\n\r\n")
        body.write(data)
    body.write(sep + b"--\r\n")
    return body.getvalue()


def python2_body(fields: Iterable[Field]) -> bytes:
    sep = b"\n--" + BOUNDARY.encode()
    body = io.BytesIO()
    for key, value in fields:
        body.write(sep)
        body.write(f'\nContent-Disposition: form-data; name="{key}"'.encode())
        if isinstance(value, tuple):
            body.write(f';filename="{value[0]}"'.encode())
            data = value[1]
        else:
            data = value.encode("utf-8") if isinstance(value, str) else value
        body.write(b"\n\n")
        body.write(data)
        if data.endswith(b"\r"):
            body.write(b"\n")  # the historic "lurve Macs" extra newline
    body.write(sep + b"--\n")
    return body.getvalue()


def request(body: bytes, *, path: str = "/legacy/", user_agent: str | None = "Python-urllib/3.11",
            authorization: str | None = "Og==", content_type: str | None = None,
            extra_headers: Sequence[tuple[str, str]] = (), content_length: int | None = None,
            version: str = "HTTP/1.1") -> bytes:
    headers = [("Accept-Encoding", "identity"), ("Host", "upload.pypi.org")]
    if user_agent:
        headers.append(("User-Agent", user_agent))
    headers.append(("Content-Type", content_type or f"multipart/form-data; boundary={BOUNDARY}"))
    headers.append(("Content-Length", str(len(body) if content_length is None else content_length)))
    if authorization:
        headers.append(("Authorization", authorization))
    headers.append(("Connection", "close"))
    headers.extend(extra_headers)
    head = f"POST {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def python2_upload(name: str, version: str, content: bytes, *, filename: str | None = None,
                   content_first: bool = True, user_agent: str | None = None,
                   authorization: str | None = None) -> bytes:
    """A Python 2 distutils upload: bare LF, `protcol_version`, only md5, UNKNOWN metadata."""
    filename = filename or f"{name}-{version}.tar.gz"
    fields: list[Field] = [
        (":action", "file_upload"), ("protcol_version", "1"), ("name", name), ("version", version),
        ("filetype", "sdist"), ("pyversion", ""), ("metadata_version", "1.0"),
        ("summary", "UNKNOWN"), ("home_page", "UNKNOWN"), ("author", "UNKNOWN"),
        ("license", "UNKNOWN"), ("description", "UNKNOWN"), ("platform", "UNKNOWN"),
        ("comment", ""), ("md5_digest", hashlib.md5(content).hexdigest()),
    ]
    content_field: Field = ("content", (filename, content))
    fields = [content_field, *fields] if content_first else [*fields, content_field]
    return request(python2_body(fields), path="/pypi", user_agent=user_agent,
                   authorization=authorization or basic("alice", "old-password"))


def python3_upload(name: str, version: str, content: bytes, *, filename: str | None = None,
                   authorization: str | None = None, **overrides: str) -> bytes:
    filename = filename or f"{name}-{version}.tar.gz"
    return request(python3_body(python3_form(name, version, filename, content, **overrides)),
                   authorization=authorization or basic("alice", "old-password"))

"""Turning a legacy upload form into one the modern upload API accepts.

Pure functions: the legacy form and the artifact in, the upstream form out. What changes and why:
- metadata comes from the artifact (distutils hard-codes metadata_version 1.0 and sends "None");
- digests are recomputed: sha256 and a 32-byte BLAKE2b (distutils sends a 64-byte one by mistake);
- `content` goes last, so the index can validate every field before it reads the file;
- the file name of an sdist is the PEP 625 one (`foo_bar-1.0.tar.gz`), bytes untouched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterator

from gateway import messages
from gateway.errors import BadRequest
from gateway.upload.artifact import PLACEHOLDERS, Artifact
from gateway.upload.multipart import Digests, Form

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UpstreamForm:
    fields: tuple[tuple[str, str], ...]
    content_filename: str

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)


def check_client_digests(form: Form, digests: Digests) -> None:
    """The md5/sha256 the client computed must match what arrived (a 64-char BLAKE2 is ignored)."""
    md5 = (form.get("md5_digest") or "").strip().lower()
    if md5 and md5 not in PLACEHOLDERS and md5 != digests.md5:
        raise BadRequest(messages.md5_mismatch())
    sha256 = (form.get("sha256_digest") or "").strip().lower()
    if sha256 and sha256 not in PLACEHOLDERS and sha256 != digests.sha256:
        raise BadRequest(messages.sha256_mismatch())


def rebuild(form: Form, artifact: Artifact, digests: Digests) -> UpstreamForm:
    fields: list[tuple[str, str]] = [(":action", "file_upload"), ("protocol_version", "1")]
    fields.extend(artifact.metadata)
    fields.append(("filetype", artifact.filetype))
    fields.append(("pyversion", artifact.pyversion))
    comment = (form.get("comment") or "").strip()
    if comment and comment not in PLACEHOLDERS:
        fields.append(("comment", comment))
    fields.append(("md5_digest", digests.md5))
    fields.append(("sha256_digest", digests.sha256))
    fields.append(("blake2_256_digest", digests.blake2_256))
    return UpstreamForm(tuple(fields), artifact.upload_filename)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """The upstream request body: small fields, then the spooled file, streamed in 1 MiB chunks.

    It has a length, so the request carries Content-Length (never chunked encoding), and it can be
    iterated again for a retry because it reads the spool from the start each time.
    """

    def __init__(self, upstream_form: UpstreamForm, fileobj, size: int, boundary: str | None = None):
        self.boundary = boundary or uuid.uuid4().hex
        marker = f"--{self.boundary}\r\n"
        head = []
        for name, value in upstream_form.fields:
            head.append(f'{marker}Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}\r\n')
        head.append(
            f'{marker}Content-Disposition: form-data; name="content"; '
            f'filename="{_quote(upstream_form.content_filename)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self._head = "".join(head).encode("utf-8")
        self._tail = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        self._file = fileobj
        self._size = size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        self._file.seek(0)
        remaining = self._size
        while remaining > 0:
            chunk = self._file.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError("the spooled upload is shorter than recorded")
            remaining -= len(chunk)
            yield chunk
        yield self._tail

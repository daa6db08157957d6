"""Turning a legacy upload form into one the modern upload API accepts.

Pure functions: the legacy form and the artifact in, the upstream form out. What changes and why:
- metadata comes from the artifact (distutils hard-codes metadata_version 1.0 and sends "None");
- digests are recomputed: sha256 and a 32-byte BLAKE2b (distutils sends a 64-byte one by mistake);
- `content` goes last, so the index can validate every field before it reads the file;
- the file name of an sdist is the PEP 625 one (`foo_bar-1.0.tar.gz`), bytes untouched.

Where the legacy form says something else than the artifact, the artifact wins (it is what the
index will serve), and `disagreements` names the fields so the upload event can record them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from packaging.version import InvalidVersion, Version

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
        raise BadRequest(md5_mismatch())
    sha256 = (form.get("sha256_digest") or "").strip().lower()
    if sha256 and sha256 not in PLACEHOLDERS and sha256 != digests.sha256:
        raise BadRequest(sha256_mismatch())


# The legacy form's metadata fields that the artifact also states, by their form names. The form's
# metadata_version is left out: distutils hard-codes 1.0 whatever it wrote into PKG-INFO.
COMPARED_TEXT = ("summary", "description", "author", "author_email", "maintainer", "maintainer_email",
                 "home_page", "download_url", "license")
COMPARED_LISTS = ("classifiers", "platform")


def _text(value: str | None) -> str | None:
    """A value as compared: line ends and trailing blanks are transport, placeholders are unset.
    (Python 2 clients add a newline after a value ending in CR; Windows ones send CRLF.)"""
    if value is None:
        return None
    value = value.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    return None if value in PLACEHOLDERS else value


def _items(values: list[str]) -> list[str]:
    return [item for item in (_text(v) for v in values) if item is not None]


def _keywords(values: list[str]) -> list[str]:
    return sorted(word.strip() for value in values for word in value.split(",") if word.strip() not in PLACEHOLDERS)


def _same_version(claimed: str, version: str) -> bool:
    try:
        return Version(claimed) == Version(version)
    except InvalidVersion:
        return claimed == version


def disagreements(form: Form, artifact: Artifact) -> tuple[str, ...]:
    """The legacy form's fields whose values differ from the artifact's metadata.

    A field the client left out, or sent as a placeholder ("None", "UNKNOWN", ""), is no
    disagreement: old clients send little."""
    stated: dict[str, list[str]] = {}
    for name, value in artifact.metadata:
        stated.setdefault(name, []).append(value)
    found: list[str] = []
    # A name for another project is refused before this; one spelt otherwise (Foo_Bar, foo-bar) is not.
    claimed_name = _text(form.get("name"))
    if claimed_name is not None and claimed_name != artifact.name:
        found.append("name")
    claimed_version = _text(form.get("version"))
    if claimed_version is not None and not _same_version(claimed_version, artifact.version):
        found.append("version")
    for name in COMPARED_TEXT:
        claimed = _text(form.get(name))
        if claimed is not None and claimed != _text(next(iter(stated.get(name, [])), None)):
            found.append(name)
    for name in COMPARED_LISTS:
        claimed_items = _items(form.get_all(name))
        if claimed_items and claimed_items != _items(stated.get(name, [])):
            found.append(name)
    claimed_keywords = _keywords(form.get_all("keywords"))
    if claimed_keywords and claimed_keywords != _keywords(stated.get("keywords", [])):
        found.append("keywords")
    return tuple(found)


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

    def __init__(self, upstream_form: UpstreamForm, fileobj: IO[bytes], size: int, boundary: str | None = None):
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


# -- reason phrases -------------------------------------------------------------------------------
def md5_mismatch() -> str:
    return (
        "the file's MD5 does not match the md5_digest the client sent: it was damaged in "
        "transit; upload it again"
    )


def sha256_mismatch() -> str:
    return "the file's SHA-256 does not match the sha256_digest the client sent; upload it again"

"""A tolerant, streaming multipart/form-data parser for what legacy upload clients send.

Hand-written because the libraries of the field (python-multipart, multipart, email) insist on
RFC 7578 framing, and the clients we serve do not: Python 2's distutils wrote bare-LF bodies,
`;filename="x"` without a space, parts in any order, and an extra "\n" after any value that ends
in "\r" (which makes the end of such a value ambiguous; the md5 digest settles it, see Spool).

The parser is pure: `feed()` bytes in any chunking, `close()` returns the form. File parts go to
a sink (`Spool`) as they arrive, so memory stays bounded whatever the file size.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.errors import BadRequest

MAX_PART_HEADER_BYTES = 8 * 1024
MAX_FIELD_BYTES = 1024 * 1024
MAX_FIELDS_TOTAL = 8 * 1024 * 1024
MAX_PARTS = 1000
MAX_BOUNDARY = 200
FILE_FIELDS = ("content", "gpg_signature")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")


class _Hasher(Protocol):
    def hexdigest(self) -> str: ...


@dataclass
class Digests:
    size: int
    md5: str
    sha256: str
    blake2_256: str


class Spool:
    """A file part on its way to disk: an anonymous temporary file plus running digests.

    The last byte is held back until the part ends: in a bare-LF body a value ending "\r" got an
    extra "\n" from the client, so when the content ends with "\r\n" we keep the digests of both
    readings and `settle()` picks the one the client's md5 confirms.
    """

    def __init__(self, spool_dir: str | None = None):
        # Outlives this call: the spool owns the file and `close()` closes it.
        self.file = tempfile.TemporaryFile(dir=spool_dir, prefix="pypissh-upload-")  # noqa: SIM115
        self._hashers = (hashlib.md5(), hashlib.sha256(), hashlib.blake2b(digest_size=32))
        self._size = 0
        self._held = b""
        self._last_committed = b""
        self.raw: Digests | None = None
        self.trimmed: Digests | None = None

    def _commit(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self.file.write(data)
        for hasher in self._hashers:
            hasher.update(data)
        self._size += len(data)
        self._last_committed = bytes(data[-1:])

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        view = memoryview(data)
        self._commit(self._held)
        self._commit(view[:-1])
        self._held = bytes(view[-1:])

    def _digests(self, hashers: Sequence[_Hasher], size: int) -> Digests:
        md5, sha256, blake = hashers
        return Digests(size, md5.hexdigest(), sha256.hexdigest(), blake.hexdigest())

    def finish(self, *, ambiguous_tail: bool) -> None:
        if ambiguous_tail and self._held == b"\n" and self._last_committed == b"\r":
            self.trimmed = self._digests([h.copy() for h in self._hashers], self._size)
        self._commit(self._held)
        self._held = b""
        self.raw = self._digests(self._hashers, self._size)

    def settle(self, client_md5: str | None) -> Digests:
        """Choose the reading the client's md5 confirms; drop the stray "\n" if that is it."""
        assert self.raw is not None, "finish() first"
        if client_md5 and self.trimmed and client_md5.lower() == self.trimmed.md5 != self.raw.md5:
            self.file.truncate(self.trimmed.size)
            self.raw, self.trimmed = self.trimmed, None
        return self.raw

    @property
    def size(self) -> int:
        return self._size + len(self._held)

    def close(self) -> None:
        self.file.close()


@dataclass
class FilePart:
    name: str
    filename: str
    spool: Spool


@dataclass
class Form:
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, FilePart] = field(default_factory=dict)
    line_endings: str = "crlf"

    def get(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]

    def close(self) -> None:
        for part in self.files.values():
            part.spool.close()


def boundary_from_content_type(content_type: str) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type, tolerating odd spacing."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise BadRequest(not_multipart(kind.strip()))
    boundaries = [value for name, value in _params(params) if name == "boundary" and value]
    if not boundaries:
        raise BadRequest(no_boundary())
    if len(boundaries) > 1:
        # Two readers could pick different ones and see different forms: refuse the ambiguity.
        raise BadRequest(two_boundaries())
    if len(boundaries[0]) > MAX_BOUNDARY:
        raise BadRequest(boundary_too_long(MAX_BOUNDARY))
    return boundaries[0].encode("latin-1")


def _params(text: str) -> list[tuple[str, str]]:
    """Split `; a="x;y"; b=z` into pairs, honouring quotes and backslash escapes."""
    pairs: list[tuple[str, str]] = []
    for match in re.finditer(r'\s*;?\s*([^=;\s]+)\s*=\s*("(?:\\.|[^"\\])*"|[^;]*)', text):
        name, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs.append((name, value))
    return pairs


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Python 2 clients sent whatever their locale produced; latin-1 never fails.
        return raw.decode("latin-1")


class MultipartParser:
    """Feed body bytes; get a `Form`. Every failure is a `BadRequest`."""

    def __init__(
        self,
        boundary: bytes,
        *,
        spool_factory: Callable[[], Spool] = Spool,
        max_parts: int = MAX_PARTS,
        max_field_bytes: int = MAX_FIELD_BYTES,
    ):
        self._dash_boundary = b"--" + boundary
        self._buffer = bytearray()
        self._state = "preamble"
        self._delimiter = b""
        self._spool_factory = spool_factory
        self._max_parts = max_parts
        self._max_field_bytes = max_field_bytes
        self._fields_total = 0
        self._part_name = ""
        self._part_filename: str | None = None
        self._part_value = bytearray()
        self._part_spool: Spool | None = None
        self._parts = 0
        self.form = Form()

    # -- public --------------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        try:
            while self._step():
                pass
        except BaseException:
            self.form.close()
            if self._part_spool is not None:
                self._part_spool.close()
            raise

    def close(self) -> Form:
        if self._state != "done":
            self.form.close()
            if self._part_spool is not None:
                self._part_spool.close()
            raise BadRequest(no_closing_boundary())
        return self.form

    # -- states -------------------------------------------------------------------------------
    def _step(self) -> bool:
        if self._state == "preamble":
            return self._preamble()
        if self._state == "headers":
            return self._headers()
        if self._state == "body":
            return self._body()
        if self._state == "after_delimiter":
            return self._after_delimiter()
        # "done": anything after the closing boundary (the epilogue) is ignored.
        self._buffer.clear()
        return False

    def _preamble(self) -> bool:
        buf = self._buffer
        index = buf.find(self._dash_boundary)
        if index < 0:
            if len(buf) > MAX_PART_HEADER_BYTES:
                raise BadRequest(no_opening_boundary())
            return False
        if index > 0 and buf[index - 1:index] != b"\n":
            raise BadRequest(boundary_mid_line())
        end = index + len(self._dash_boundary)
        if len(buf) < end + 2:
            return False
        following = bytes(buf[end:end + 2])
        if following == b"\r\n":
            self._delimiter = b"\r\n" + self._dash_boundary
            self.form.line_endings = "crlf"
        elif following[:1] == b"\n":
            self._delimiter = b"\n" + self._dash_boundary
            self.form.line_endings = "lf"
        elif following == b"--":
            del buf[:end]
            self._delimiter = b"\n" + self._dash_boundary
            self._state = "after_delimiter"
            return True
        else:
            raise BadRequest(boundary_trailing_garbage())
        # Leave the line ending: _after_delimiter consumes it.
        del buf[:end]
        self._state = "after_delimiter"
        return True

    def _after_delimiter(self) -> bool:
        buf = self._buffer
        if len(buf) < 2:
            return False
        if buf[:2] == b"--":
            self._state = "done"
            return True
        if buf[:2] == b"\r\n":
            del buf[:2]
        elif buf[:1] == b"\n":
            del buf[:1]
        else:
            raise BadRequest(boundary_without_new_line())
        self._state = "headers"
        return True

    def _headers(self) -> bool:
        buf = self._buffer
        match = _HEADER_END.search(buf, 0, MAX_PART_HEADER_BYTES + 4)
        if match is None:
            if len(buf) > MAX_PART_HEADER_BYTES:
                raise BadRequest(part_headers_too_large(MAX_PART_HEADER_BYTES // 1024))
            return False
        head = bytes(buf[:match.start()])
        del buf[:match.end()]
        self._start_part(head)
        self._state = "body"
        return True

    def _start_part(self, head: bytes) -> None:
        self._parts += 1
        if self._parts > self._max_parts:
            raise BadRequest(too_many_parts(self._max_parts))
        name = filename = None
        seen: set[bytes] = set()
        for line in _LINE_SPLIT.split(head):
            key, sep, value = line.partition(b":")
            if not sep:
                raise BadRequest(malformed_part_header())
            key = key.strip().lower()
            if key in seen and key in (b"content-disposition", b"content-type"):
                raise BadRequest(duplicate_part_header(key.decode("latin-1")))
            seen.add(key)
            if key == b"content-type" and value.strip().lower().startswith(b"multipart/"):
                raise BadRequest(nested_multipart())
            if key != b"content-disposition":
                continue
            kind, _, params = _decode(value).strip().partition(";")
            if kind.strip().lower() != "form-data":
                raise BadRequest(part_not_form_data())
            pairs = _params(params)
            names = [pvalue for pname, pvalue in pairs if pname == "name"]
            filenames = [pvalue for pname, pvalue in pairs if pname == "filename"]
            if len(names) > 1 or len(filenames) > 1:
                raise BadRequest(part_named_twice())
            name = names[0] if names else None
            filename = filenames[0] if filenames else None
        if name is None:
            raise BadRequest(part_without_name())
        if name in FILE_FIELDS and filename is None:
            filename = ""
        self._part_name = name
        self._part_filename = filename
        self._part_value = bytearray()
        self._part_spool = None
        if filename is not None:
            if name in self.form.files:
                raise BadRequest(duplicate_file_part(name))
            self._part_spool = self._spool_factory()

    def _body(self) -> bool:
        buf = self._buffer
        index = buf.find(self._delimiter)
        if index < 0:
            keep = len(self._delimiter) - 1
            if len(buf) > keep:
                self._emit(memoryview(buf)[: len(buf) - keep])
                del buf[: len(buf) - keep]
            return False
        self._emit(memoryview(buf)[:index])
        del buf[: index + len(self._delimiter)]
        self._end_part()
        self._state = "after_delimiter"
        return True

    def _emit(self, data: memoryview) -> None:
        if not data:
            return
        if self._part_spool is not None:
            self._part_spool.write(data)
            return
        self._fields_total += len(data)
        if len(self._part_value) + len(data) > self._max_field_bytes:
            raise BadRequest(field_too_large(self._part_name, self._max_field_bytes // 1024))
        if self._fields_total > MAX_FIELDS_TOTAL:
            raise BadRequest(fields_too_large(MAX_FIELDS_TOTAL // (1024 * 1024)))
        self._part_value += data

    def _end_part(self) -> None:
        lf = self.form.line_endings == "lf"
        if self._part_spool is not None:
            self._part_spool.finish(ambiguous_tail=lf)
            self.form.files[self._part_name] = FilePart(
                self._part_name, self._part_filename or "", self._part_spool)
            self._part_spool = None
            return
        value = bytes(self._part_value)
        if lf and value.endswith(b"\r\n"):
            # The Python 2 client's extra "\n" after a trailing "\r" (see module docstring).
            value = value[:-1]
        self.form.fields.append((self._part_name, _decode(value)))


# -- reason phrases -------------------------------------------------------------------------------
def not_multipart(content_type: str) -> str:
    return (
        f"expected a multipart/form-data upload, got '{content_type or 'no Content-Type'}'; "
        "send the request as `setup.py upload` or twine does"
    )


def no_boundary() -> str:
    return "the Content-Type has no multipart boundary; the request cannot be read"


def two_boundaries() -> str:
    return "the Content-Type names more than one multipart boundary; send one"


def boundary_too_long(limit: int) -> str:
    return f"the multipart boundary is longer than {limit} characters"


def no_closing_boundary() -> str:
    return "the upload body ended before the closing multipart boundary; the request was cut short, try again"


def no_opening_boundary() -> str:
    return "the upload body does not start with its multipart boundary"


def boundary_mid_line() -> str:
    return "the multipart boundary appears mid-line; the request is malformed"


def boundary_trailing_garbage() -> str:
    return "the multipart boundary line has trailing garbage"


def boundary_without_new_line() -> str:
    return "the multipart boundary is followed by garbage instead of a new line"


def part_headers_too_large(kib: int) -> str:
    return f"a multipart part's headers exceed {kib} KiB; the request is malformed"


def too_many_parts(limit: int) -> str:
    return f"the upload has more than {limit} form parts"


def malformed_part_header() -> str:
    return "a multipart part has a malformed header line"


def duplicate_part_header(name: str) -> str:
    return f"a multipart part has two {name} headers; send one"


def nested_multipart() -> str:
    return "a form part is itself multipart (nested multipart is not accepted); send each file as its own part"


def part_not_form_data() -> str:
    return "a multipart part is not form-data (nested multipart is not accepted)"


def part_named_twice() -> str:
    return "a multipart part names itself twice in its Content-Disposition; send one name"


def part_without_name() -> str:
    return "a multipart part has no Content-Disposition name"


def duplicate_file_part(name: str) -> str:
    return f"the upload has more than one '{name}' file part"


def field_too_large(name: str, kib: int) -> str:
    return f"form field '{name[:40]}' is larger than {kib} KiB"


def fields_too_large(mib: int) -> str:
    return f"the form's text fields add up to more than {mib} MiB"

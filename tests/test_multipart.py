"""The tolerant multipart parser, on the byte patterns real legacy clients produce."""

from __future__ import annotations

import hashlib

import pytest

from gateway.errors import BadRequest
from gateway.upload.multipart import MultipartParser, boundary_from_content_type
from testbed import legacyrequests as lr

BOUNDARY = lr.BOUNDARY.encode()


_parsed: list = []


@pytest.fixture(autouse=True)
def _close_parsed_forms():
    """Each test's forms are closed after it, their spool files with them."""
    yield
    while _parsed:
        _parsed.pop().close()


def parse(body: bytes, chunk: int | None = None):
    parser = MultipartParser(BOUNDARY)
    step = chunk or len(body) or 1
    for start in range(0, len(body), step):
        parser.feed(body[start:start + step])
    form = parser.close()
    _parsed.append(form)
    return form


def content_of(form) -> bytes:
    spool = form.files["content"].spool
    spool.file.seek(0)
    return spool.file.read()


@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_python3_body_parses_in_any_chunking(chunk):
    """A Python 3 distutils body parses to the same fields and bytes however it is split."""
    data = b"\x00\r\n--not-a-boundary\r\n" + bytes(range(256))
    form = parse(lr.python3_body(lr.python3_form("pkg", "1.0", "pkg-1.0.tar.gz", data)), chunk)
    assert content_of(form) == data
    assert form.files["content"].filename == "pkg-1.0.tar.gz"
    assert form.get(":action") == "file_upload" and form.get("name") == "pkg"
    assert form.line_endings == "crlf"


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_python2_bare_lf_content_first(chunk):
    """Bare LF, content first, `;filename=` without a space and `protcol_version` all parse."""
    body = lr.python2_body([("content", ("x-1.0.tar.gz", b"abc\ndef")), ("protcol_version", "1"), ("name", "x")])
    form = parse(body, chunk)
    assert form.line_endings == "lf"
    assert content_of(form) == b"abc\ndef"
    assert form.get("protcol_version") == "1" and form.get("name") == "x"


def test_trailing_cr_quirk_is_settled_by_md5():
    """Python 2 wrote an extra "\\n" after a value ending in "\\r"; the client's md5 picks the true file."""
    data = b"binary\r"
    form = parse(lr.python2_body([("content", ("x-1.0.tar.gz", data)), ("md5_digest", hashlib.md5(data).hexdigest())]))
    spool = form.files["content"].spool
    digests = spool.settle(form.get("md5_digest"))
    assert digests.size == len(data) and digests.md5 == hashlib.md5(data).hexdigest()
    assert content_of(form) == data


def test_trailing_crlf_that_is_real_is_kept():
    """A file that really ends in "\\r\\n" keeps it when the md5 says so."""
    data = b"binary\r\n"
    body = lr.python2_body([("content", ("x-1.0.tar.gz", data))])
    form = parse(body)
    assert form.files["content"].spool.settle(hashlib.md5(data).hexdigest()).size == len(data)
    assert content_of(form) == data


def test_text_values_drop_the_quirk_newline():
    """A text field ending in "\\r" comes back without the client's extra "\\n"."""
    form = parse(lr.python2_body([("comment", "hello\r")]))
    assert form.get("comment") == "hello\r"


def test_non_utf8_text_is_decoded_without_failing():
    """Latin-1 bytes from an old locale decode instead of failing."""
    form = parse(lr.python3_body([("author", "Jos\xe9".encode("latin-1"))]))
    assert form.get("author") == "José"


def test_repeated_fields_keep_their_order():
    """Lists (classifiers) arrive as repeated parts, in order."""
    form = parse(lr.python3_body([("classifiers", "A"), ("classifiers", "B")]))
    assert form.get_all("classifiers") == ["A", "B"]


@pytest.mark.parametrize("body, message", [
    (b"no boundary anywhere" * 1000, "does not start"),
    (lr.python3_body([("name", "x")])[:-10], "ended before"),
    (lr.python3_body([("content", ("a", b"1")), ("content", ("b", b"2"))]), "more than one"),
    (b"\r\n--" + BOUNDARY + b"\r\nX-Nothing: here\r\n\r\nvalue\r\n--" + BOUNDARY + b"--\r\n", "no Content-Disposition"),
    (b"\r\n--" + BOUNDARY + b"\r\nContent-Disposition: mixed; name=\"a\"\r\n\r\nv\r\n--" + BOUNDARY + b"--\r\n", "nested"),
])
def test_malformed_bodies_are_refused_with_a_reason(body, message):
    """Malformed bodies raise BadRequest whose reason says what is wrong."""
    with pytest.raises(BadRequest, match=message):
        parse(body)


def test_field_size_is_bounded():
    """A text field over the per-field limit is refused, not buffered without end."""
    parser = MultipartParser(BOUNDARY, max_field_bytes=1024)
    with pytest.raises(BadRequest, match="larger than 1 KiB"):
        parser.feed(lr.python3_body([("description", "x" * 5000)]))


def test_part_count_is_bounded():
    """Thousands of parts are refused."""
    parser = MultipartParser(BOUNDARY, max_parts=50)
    with pytest.raises(BadRequest, match="more than 50 form parts"):
        parser.feed(lr.python3_body([("keywords", "k")] * 60))


@pytest.mark.parametrize("header, expected", [
    ("multipart/form-data; boundary=abc", b"abc"),
    ('multipart/form-data; charset=utf-8; boundary="a;b"', b"a;b"),
    ("Multipart/Form-Data;boundary=xyz", b"xyz"),
])
def test_boundary_from_content_type(header, expected):
    """The boundary is found with odd case, quoting and spacing."""
    assert boundary_from_content_type(header) == expected


def test_non_multipart_content_type_is_refused():
    """A urlencoded or JSON body is not an upload."""
    with pytest.raises(BadRequest, match="multipart/form-data"):
        boundary_from_content_type("application/json")

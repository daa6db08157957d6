"""A corpus of hostile legacy requests: what an attacker (or a badly broken client) sends down an
authenticated SSH session, each with the refusal the gateway must give.

Built on `legacyrequests` so every case differs from a real distutils upload in exactly the way its
name says. `corpus(project)` returns the cases; `Case.mode` tells the runner how to send it:
"send" (all bytes, then EOF), "stall" (some bytes, then silence with the session held open) or
"drip" (one byte at a time, slowly, for as long as the gateway listens).
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

from testbed import legacyrequests as lr

BOUNDARY = lr.BOUNDARY
CRLF = b"\r\n"


@dataclass
class Case:
    name: str
    build: Callable[[], bytes] = field(repr=False)
    status: int | tuple[int, ...]
    reason: str  # a fragment the reason phrase must contain (case-insensitive)
    mode: str = "send"

    @cached_property
    def data(self) -> bytes:
        """The request bytes, built on first use (some cases take a second to make)."""
        return self.build()

    def accepts(self, status: int) -> bool:
        return status in self.status if isinstance(self.status, tuple) else status == self.status


# -- building blocks ----------------------------------------------------------------------------
def head(*lines: str, body: bytes = b"", request_line: str = "POST /legacy/ HTTP/1.1") -> bytes:
    text = request_line + "\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n"
    return text.encode("latin-1") + body


def standard_headers(length: int, *, content_type: str | None = None) -> list[str]:
    return [
        "Accept-Encoding: identity", "Host: upload.pypi.org", "User-Agent: Python-urllib/3.11",
        f"Content-Type: {content_type or 'multipart/form-data; boundary=' + BOUNDARY}",
        f"Content-Length: {length}", "Authorization: " + lr.basic("alice", "old-password"),
        "Connection: close",
    ]


def part(name: str, value: bytes, *, filename: str | bytes | None = None,
         extra_headers: Sequence[bytes] = ()) -> bytes:
    disposition = b'Content-Disposition: form-data; name="' + name.encode() + b'"'
    if filename is not None:
        raw = filename if isinstance(filename, bytes) else filename.encode("utf-8")
        disposition += b'; filename="' + raw + b'"'
    lines = [disposition, *extra_headers]
    return b"--" + BOUNDARY.encode() + CRLF + CRLF.join(lines) + CRLF + CRLF + value + CRLF


def close() -> bytes:
    return b"--" + BOUNDARY.encode() + b"--" + CRLF


def form_body(parts: Sequence[bytes]) -> bytes:
    return b"".join(parts) + close()


def upload_fields(project: str, version: str = "1.0", **overrides: str) -> list[bytes]:
    fields = {":action": "file_upload", "protocol_version": "1", "name": project, "version": version,
              "filetype": "sdist", "pyversion": "source", "metadata_version": "1.0"}
    fields.update(overrides)
    return [part(key, value.encode("utf-8")) for key, value in fields.items()]


def upload_with(project: str, content: bytes, *, filename: str | bytes | None = None, version: str = "1.0",
                extra_parts: Sequence[bytes] = (), md5: str | None = None, **overrides: str) -> bytes:
    """A Python 3 style upload whose content part carries `content` under `filename`."""
    filename = filename if filename is not None else f"{project}-{version}.tar.gz"
    parts = upload_fields(project, version, **overrides)
    parts.append(part("content", content, filename=filename))
    parts.extend(extra_parts)
    parts.append(part("md5_digest", (md5 or hashlib.md5(content).hexdigest()).encode()))
    body = form_body(parts)
    return head(*standard_headers(len(body)), body=body)


def with_body(body: bytes, *, content_type: str | None = None) -> bytes:
    return head(*standard_headers(len(body), content_type=content_type), body=body)


# -- hostile archives ---------------------------------------------------------------------------
def tar_gz(members: Sequence[tuple[tarfile.TarInfo, bytes | None]], *, level: int = 6,
           pax: bool = False) -> bytes:
    buffer = io.BytesIO()
    kind = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=level, format=kind) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(path: str, data: bytes = b"", **attrs) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mtime = int(time.time())
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def pkg_info(name: str, version: str) -> bytes:
    return f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\nSummary: hostile\n".encode()


def gzip_bomb_sdist(project: str, version: str, expanded: int) -> bytes:
    """A .tar.gz whose only member is `expanded` bytes of zeros (no PKG-INFO): tiny on the wire,
    a long decompression for whoever looks inside without a bound."""
    top = f"{project}-{version}"
    zeros_member = tarfile.TarInfo(f"{top}/zeros.bin")
    zeros_member.size = expanded
    header = zeros_member.tobuf(format=tarfile.GNU_FORMAT)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    out = [compressor.compress(header)]
    block = bytes(1024 * 1024)
    for _ in range(expanded // len(block)):
        out.append(compressor.compress(block))
    out.append(compressor.compress(bytes(expanded % len(block)) + bytes(1024)))  # data + end blocks
    out.append(compressor.flush())
    return b"".join(out)


def pax_header_bomb(project: str, version: str) -> bytes:
    """A pax extended header of 16 MiB before a real PKG-INFO: tarfile would read it whole."""
    top = f"{project}-{version}"
    info, data = member(f"{top}/PKG-INFO", pkg_info(project, version))
    info.pax_headers = {"comment": "x" * (16 * 1024 * 1024)}
    return tar_gz([(info, data)], level=1, pax=True)


def many_members_sdist(project: str, version: str, count: int) -> bytes:
    top = f"{project}-{version}"
    return tar_gz([member(f"{top}/f{i}") for i in range(count)], level=1)


def sdist_with(project: str, version: str, *, pkg: bytes, top: str | None = None,
               pkg_attrs: dict | None = None) -> bytes:
    top = top or f"{project}-{version}"
    return tar_gz([member(f"{top}/PKG-INFO", pkg, **(pkg_attrs or {})), member(f"{top}/setup.py", b"pass\n")])


def wheel(project: str, version: str, metadata: bytes, *, dist_info: str | None = None,
          compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    dist_info = dist_info or f"{project.replace('-', '_')}-{version}.dist-info"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as archive:
        archive.writestr(f"{project.replace('-', '_')}/__init__.py", b"")
        archive.writestr(f"{dist_info}/METADATA", metadata)
        archive.writestr(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return buffer.getvalue()


def wheel_metadata_bomb(project: str, version: str) -> bytes:
    """A wheel whose METADATA inflates to 64 MiB of zeros."""
    return wheel(project, version, bytes(64 * 1024 * 1024))


def wheel_lying_size(project: str, version: str) -> bytes:
    """METADATA whose directory entry claims 100 bytes while the data inflates to megabytes."""
    data = wheel(project, version, pkg_info(project, version) + bytes(8 * 1024 * 1024))
    buffer = bytearray(data)
    index = 0
    while (index := buffer.find(b"PK\x01\x02", index)) >= 0:  # central-directory entries
        name_length = struct.unpack("<H", buffer[index + 28:index + 30])[0]
        if bytes(buffer[index + 46:index + 46 + name_length]).endswith(b"/METADATA"):
            buffer[index + 24:index + 28] = struct.pack("<I", 100)  # uncompressed size
        index += 46
    return bytes(buffer)


def wheel_huge_directory(project: str, version: str, entries: int = 250_000) -> bytes:
    """A wheel whose central directory lists a quarter of a million files (some 12 MiB): merely
    listing it costs a parser hundreds of megabytes. Every entry points at the one real member."""
    real = wheel(project, version, pkg_info(project, version), compress=zipfile.ZIP_STORED)
    end = real.rindex(b"PK\x05\x06")
    size, offset = struct.unpack("<II", real[end + 12:end + 20])
    first = real[offset:offset + size]
    template = first[:28]
    filler = b"".join(template + struct.pack("<HHHHHII", 8, 0, 0, 0, 0, 0, 0) + f"{i:08x}".encode()
                      for i in range(entries))
    directory = real[offset:offset + size] + filler
    count = min(0xFFFF, 3 + entries)
    record = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), offset, 0)
    return real[:offset] + directory + record


def wheel_name(project: str, version: str) -> str:
    return f"{project.replace('-', '_')}-{version}-py3-none-any.whl"


# -- the corpus ---------------------------------------------------------------------------------
def corpus(project: str, version: str = "1.0") -> list[Case]:
    """Every hostile case, for a project name nobody uses (nothing may reach the upstream)."""
    sdist = lr.make_sdist(project, version)
    good = lr.python3_upload(project, version, sdist)
    head_end = good.index(b"\r\n\r\n") + 4
    body = good[head_end:]
    cases: list[Case] = []

    def add(name: str, data: bytes | Callable[[], bytes], status, reason: str, mode: str = "send") -> None:
        build = data if callable(data) else (lambda: data)
        cases.append(Case(name, build, status, reason, mode))

    # HTTP framing
    add("truncated_body", good[: head_end + len(body) // 2], 400, "cut short")
    add("truncated_head", good[: head_end // 2], 400, "before the request headers were complete")
    add("empty_session", b"", 400, "without sending a request")
    add("content_length_too_long", with_body(body).replace(
        f"Content-Length: {len(body)}".encode(), f"Content-Length: {len(body) + 5000}".encode()), 400, "cut short")
    add("content_length_too_short", with_body(body).replace(
        f"Content-Length: {len(body)}".encode(), f"Content-Length: {len(body) - 300}".encode()),
        400, "closing multipart boundary")
    add("content_length_conflicting_duplicate",
        head(*standard_headers(len(body)), f"Content-Length: {len(body) + 1}", body=body), 400, "content-length")
    add("content_length_list", with_body(body).replace(
        f"Content-Length: {len(body)}".encode(), f"Content-Length: {len(body)}, {len(body) + 7}".encode()),
        400, "content-length")
    add("content_length_negative", with_body(body).replace(
        f"Content-Length: {len(body)}".encode(), b"Content-Length: -1"), 400, "content-length")
    add("content_length_not_a_number", with_body(body).replace(
        f"Content-Length: {len(body)}".encode(), b"Content-Length: 12ab"), 400, "content-length")
    add("content_length_absurd", with_body(body).replace(
        f"Content-Length: {len(body)}".encode(), b"Content-Length: 1099511627776"), 413, "limit")
    add("content_length_missing", head(*[h for h in standard_headers(0) if not h.startswith("Content-Length")],
                                       body=body), 411, "content-length")
    chunked = f"{len(body):x}".encode() + CRLF + body + CRLF + b"0" + CRLF + CRLF
    add("chunked_encoding", head(*[h for h in standard_headers(0) if not h.startswith("Content-Length")],
                                 "Transfer-Encoding: chunked", body=chunked), 411, "chunked")
    add("chunked_and_content_length", head(*standard_headers(len(chunked)), "Transfer-Encoding: chunked",
                                           body=chunked), 411, "chunked")
    add("duplicate_content_type", head(*standard_headers(len(body)), "Content-Type: text/plain", body=body),
        400, "two content-type")
    add("duplicate_authorization", head(*standard_headers(len(body)), "Authorization: Basic Og==", body=body),
        400, "two authorization")
    add("header_bare_cr_injection", head(*standard_headers(len(body)), "X-Note: a\rSet-Cookie: x", body=body),
        400, "not an HTTP request")
    add("header_nul_byte", head(*standard_headers(len(body)), "X-Note: a\x00b", body=body),
        400, "not an HTTP request")
    add("header_name_with_space", head(*standard_headers(len(body)), "Content-Length : 5", body=body),
        400, "not an HTTP request")
    add("too_many_header_lines", head(*standard_headers(len(body)), *[f"X-{i}: y" for i in range(300)],
                                      body=body), 431, "headers exceed")
    add("header_block_too_large", head(*standard_headers(len(body)), "X-Big: " + "a" * 70_000, body=body),
        431, "headers exceed")
    add("request_line_with_nul", b"POST /leg\x00acy/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "not an HTTP request")
    add("http09_request", b"GET /\r\n", 400, "before the request headers were complete")
    add("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/2")
    add("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",
        400, "not an HTTP request")
    add("ssh_banner_in_session", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", 400, "not an HTTP request")
    add("method_put", good.replace(b"POST /legacy/", b"PUT /legacy/", 1), 405, "method")
    add("method_connect", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405, "method")
    add("get_other_action", b"GET /legacy/?:action=show_md5 HTTP/1.0\r\n\r\n", 405, "not supported")

    # multipart structure
    add("no_boundary_parameter", with_body(body, content_type="multipart/form-data"), 400, "no multipart boundary")
    add("two_boundary_parameters", with_body(body, content_type=f"multipart/form-data; boundary={BOUNDARY}; "
                                                                "boundary=other"), 400, "more than one multipart boundary")
    add("boundary_not_in_body", with_body(body.replace(BOUNDARY.encode(), b"x" * len(BOUNDARY))),
        400, "multipart boundary")
    add("missing_closing_boundary", with_body(body[: body.rindex(b"--" + BOUNDARY.encode() + b"--")]),
        400, "closing multipart boundary")
    add("urlencoded_instead_of_multipart", with_body(b":action=file_upload&name=x",
                                                     content_type="application/x-www-form-urlencoded"),
        400, "expected a multipart/form-data upload")
    nested = (b"--inner\r\nContent-Disposition: form-data; name=\"content\"; filename=\"a.tar.gz\"\r\n\r\n"
              + sdist + b"\r\n--inner--\r\n")
    add("nested_multipart", with_body(form_body(upload_fields(project) + [
        part("content", nested, extra_headers=[b"Content-Type: multipart/mixed; boundary=inner"])])),
        400, "nested multipart")
    add("part_without_disposition", with_body(form_body(upload_fields(project) + [
        b"--" + BOUNDARY.encode() + CRLF + b"Content-Type: text/plain" + CRLF + CRLF + b"x" + CRLF])),
        400, "no Content-Disposition name")
    add("part_attachment_disposition", with_body(form_body([
        b"--" + BOUNDARY.encode() + CRLF + b'Content-Disposition: attachment; name="x"' + CRLF + CRLF + b"x" + CRLF])),
        400, "not form-data")
    add("part_two_dispositions", with_body(form_body(upload_fields(project) + [
        part("content", sdist, filename=f"{project}-{version}.tar.gz",
             extra_headers=[b'Content-Disposition: form-data; name="comment"'])])), 400, "two content-disposition")
    add("part_named_twice", with_body(form_body([
        b"--" + BOUNDARY.encode() + CRLF + b'Content-Disposition: form-data; name=":action"; name="x"'
        + CRLF + CRLF + b"file_upload" + CRLF])), 400, "names itself twice")
    add("two_content_parts", upload_with(project, sdist, extra_parts=[
        part("content", sdist, filename=f"{project}-{version}.tar.gz")]), 400, "more than one 'content'")
    add("part_header_too_large", with_body(form_body([
        b"--" + BOUNDARY.encode() + CRLF + b'Content-Disposition: form-data; name="x"' + CRLF
        + b"X-Pad: " + b"p" * 9000 + CRLF + CRLF + b"v" + CRLF])), 400, "headers exceed 8 KiB")
    add("part_header_without_colon", with_body(form_body([
        b"--" + BOUNDARY.encode() + CRLF + b"this is not a header" + CRLF + CRLF + b"v" + CRLF])),
        400, "malformed header line")
    add("oversized_text_field", lambda: upload_with(project, sdist, description="d" * (1536 * 1024)),
        400, "larger than 1024 KiB")
    add("text_fields_over_total", lambda: upload_with(project, sdist, extra_parts=[
        part(f"extra{i}", b"e" * (1000 * 1024)) for i in range(9)]), 400, "more than 8 MiB")
    add("thousands_of_parts", lambda: with_body(form_body(upload_fields(project) + [
        part("classifiers", b"Topic :: Utilities") for _ in range(3000)])), 400, "more than 1000 form parts")
    add("no_content_part", with_body(form_body(upload_fields(project))), 400, "no 'content' file part")
    add("no_action", with_body(form_body([part("name", project.encode())])), 400, "no ':action'")
    add("unknown_action", with_body(form_body([part(":action", b"remove_pkg")])), 400, "not supported")
    add("doc_upload", with_body(form_body([part(":action", b"doc_upload")])), 410, "documentation uploads")
    add("md5_mismatch", upload_with(project, sdist, md5="0" * 32), 400, "MD5 does not match")
    add("sha256_mismatch", upload_with(project, sdist, extra_parts=[part("sha256_digest", b"1" * 64)]),
        400, "SHA-256 does not match")
    add("reason_phrase_injection", upload_with(project, sdist, name="other\r\nX-Injected: yes"),
        400, "names project")

    # file names
    for label, filename in [
        ("path_traversal", f"../../{project}-{version}.tar.gz"),
        ("absolute_path", f"/etc/cron.d/{project}-{version}.tar.gz"),
        ("windows_path", f"..\\..\\{project}-{version}.tar.gz"),
        ("control_characters", f"{project}\x1b[2J-{version}.tar.gz"),
        ("nul_in_filename", f"{project}\x00-{version}.tar.gz"),
        ("bare_cr_injection_in_filename", f"{project}-{version}.tar.gz\rX-Injected: yes"),
        ("encoded_crlf_in_filename", f"{project}-{version}.tar.gz%0D%0AX-Injected: yes"),
        ("empty_filename", ""),
        ("dot_dot_filename", ".."),
    ]:
        add(f"filename_{label}", upload_with(project, sdist, filename=filename), 400, "not a plain distribution file name")
    add("filename_not_utf8", upload_with(project, sdist, filename=f"{project}-{version}".encode() + b"\xe9.tar.gz"),
        400, "not a plain distribution file name")

    # archives
    add("gzip_bomb_sdist", lambda: upload_with(project, gzip_bomb_sdist(project, version, 256 * 1024 * 1024)),
        400, "no <name>-<version>/PKG-INFO")
    add("pax_header_bomb", lambda: upload_with(project, pax_header_bomb(project, version)), 400, "member header")
    add("many_members_sdist", lambda: upload_with(project, many_members_sdist(project, version, 10_000)),
        400, "no <name>-<version>/PKG-INFO")
    add("pkg_info_as_symlink", upload_with(project, tar_gz([
        member(f"{project}-{version}/PKG-INFO", type=tarfile.SYMTYPE, linkname="/etc/passwd")])),
        400, "no <name>-<version>/PKG-INFO")
    add("pkg_info_too_large", lambda: upload_with(project, sdist_with(
        project, version, pkg=pkg_info(project, version) + b"Description: " + b"z" * (5 * 1024 * 1024))),
        400, "larger than 4 MiB")
    add("sdist_lies_about_name", upload_with(project, sdist_with(project, version, pkg=pkg_info("requests", version))),
        400, "does not match the metadata")
    add("sdist_lies_about_version", upload_with(project, sdist_with(project, version, pkg=pkg_info(project, "9.9"))),
        400, "does not match the metadata")
    add("form_names_other_project", upload_with(project, sdist, name="requests"), 400, "names project 'requests'")
    add("form_name_not_utf8", with_body(form_body(upload_fields(project)[:2] + [
        part("name", project.encode() + b"-caf\xe9"), part("content", sdist, filename=f"{project}-{version}.tar.gz")])),
        400, "names project")
    add("sdist_not_pep440", upload_with(project, sdist_with(project, "1.0-beta-final",
                                                            pkg=pkg_info(project, "1.0-beta-final")),
                                        filename=f"{project}-1.0-beta-final.tar.gz"), 400, "not a PEP 440 version")
    add("pkg_info_not_utf8", upload_with(project, sdist_with(
        project, version, pkg=f"Metadata-Version: 1.1\nName: {project}\n".encode() + b"Version: 1.\xff\xfe\n")),
        400, "PEP 440")
    add("not_a_gzip", upload_with(project, b"\x89PNG\r\n\x1a\n" + bytes(4000)), 400, "not a readable .tar.gz")
    add("truncated_gzip", upload_with(project, sdist[: len(sdist) // 2]), 400, "not a readable .tar.gz")
    add("zip_sdist", upload_with(project, b"PK\x03\x04", filename=f"{project}-{version}.zip"), 400, ".tar.gz")
    add("egg", upload_with(project, b"PK\x03\x04", filename=f"{project}-{version}-py2.7.egg"), 400, "eggs")
    add("wheel_metadata_bomb", lambda: upload_with(project, wheel_metadata_bomb(project, version),
                                           filename=wheel_name(project, version)), 400, "larger than 4 MiB")
    add("wheel_lying_size", lambda: upload_with(project, wheel_lying_size(project, version),
                                        filename=wheel_name(project, version)), 400, "not a readable zip")
    add("wheel_huge_directory", lambda: upload_with(project, wheel_huge_directory(project, version),
                                            filename=wheel_name(project, version)), 400, "list of files")
    add("wheel_lies_about_name", upload_with(project, wheel(project, version, pkg_info("requests", version)),
                                             filename=wheel_name(project, version)), 400, "does not match the metadata")
    add("wheel_lies_about_version", upload_with(project, wheel(project, version, pkg_info(project, "2.0")),
                                                filename=wheel_name(project, version)), 400, "does not match the metadata")
    add("wheel_not_a_zip", upload_with(project, b"not a zip at all" * 100, filename=wheel_name(project, version)),
        400, "not a readable zip")

    # time
    add("stall_mid_body", good[: head_end + len(body) // 2], 408, "no data from the client", mode="stall")
    add("slow_drip", good, 408, "took too long", mode="drip")
    return cases

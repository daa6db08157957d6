"""The testbed itself: the TLS pypiserver upstream, the test CA and the legacy pypissh client."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from testbed.recordings import FormError, parse_form
from testbed.sample import (
    build_sdist,
    make_legacy_project,
    make_modern_project,
    run_legacy,
    write_pypirc,
)
from testbed.tlsca import make_tls
from testbed.upstream import TlsPypiServer

LEGACY_BOUNDARY = "--------------GHSKFJDLGDS7543FJKLFHRE75642756743254"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with TlsPypiServer(tmp_path_factory.mktemp("upstream")) as server:
        yield server


@pytest.fixture
def clean_upstream(upstream):
    upstream.clear_fault()
    upstream.clear_recordings()
    yield upstream
    upstream.clear_fault()


def _upload_form(filename: str, content: bytes) -> tuple[dict, dict]:
    data = {":action": "file_upload", "protocol_version": "1", "name": "x", "version": "1.0"}
    files = {"content": (filename, content, "application/octet-stream")}
    return data, files


# The test CA ----------------------------------------------------------------------------------


def test_certificates_have_the_expected_names_and_usages(tmp_path):
    """The server certificate names 127.0.0.1, ::1 and localhost for serverAuth; the CA can sign."""
    tls = make_tls(tmp_path)
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert server.issuer == ca.subject


def test_requests_verifies_the_upstream_with_its_ca(upstream):
    """requests verifies the upstream's certificate against the test CA, by IP and by name."""
    assert requests.get(upstream.url, verify=str(upstream.ca_file), timeout=10).status_code == 200
    by_name = upstream.url.replace("127.0.0.1", "localhost")
    assert requests.get(by_name, verify=str(upstream.ca_file), timeout=10).status_code == 200


def test_an_unrelated_ca_does_not_verify_the_upstream(upstream, tmp_path):
    """A second, unrelated CA does not verify the upstream's certificate."""
    other = make_tls(tmp_path / "other")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(upstream.url, verify=str(other.ca_cert), timeout=10)


# The upstream ---------------------------------------------------------------------------------


def test_twine_upload_is_stored_and_recorded(clean_upstream, tmp_path):
    """twine uploads an sdist built by `python -m build` with __token__ and the CA bundle."""
    upstream = clean_upstream
    project = make_modern_project(tmp_path / "modern", name="modern-pkg", version="2.0")
    sdist = build_sdist(project, tmp_path / "dist")
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(upstream.ca_file), HOME=str(tmp_path))
    for name in ("TWINE_USERNAME", "TWINE_PASSWORD", "TWINE_REPOSITORY_URL", "TWINE_CERT"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", upstream.url, "-u", "__token__", "-p", upstream.token, str(sdist)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert upstream.files()[sdist.name] == digest
    [record] = [r for r in upstream.recordings() if r.method == "POST"]
    assert record.status_code == 200 and record.body_complete and not record.faulted
    assert record.basic_auth() == ("__token__", upstream.token)
    form = record.form()
    assert form[-1][0] == "content" and form[-1][2] == sdist.name
    assert hashlib.sha256(form[-1][1]).hexdigest() == digest


def test_a_wrong_token_is_forbidden(clean_upstream):
    """An upload with a wrong token is refused with 403."""
    data, files = _upload_form("wrong_token-1.0.tar.gz", b"x")
    response = requests.post(clean_upstream.url, data=data, files=files,
                             auth=("__token__", "pypi-wrong"),
                             verify=str(clean_upstream.ca_file), timeout=10)
    assert response.status_code == 403
    assert "wrong_token-1.0.tar.gz" not in clean_upstream.files()


def test_the_token_works_only_with_the_token_username(clean_upstream):
    """The right token under another username (an old login name) is refused with 403."""
    data, files = _upload_form("other_user-1.0.tar.gz", b"x")
    response = requests.post(clean_upstream.url, data=data, files=files,
                             auth=("olduser", clean_upstream.token),
                             verify=str(clean_upstream.ca_file), timeout=10)
    assert response.status_code == 403


def test_a_missing_token_is_unauthorized(clean_upstream):
    """An upload without credentials gets 401 with a Basic challenge."""
    data, files = _upload_form("no_token-1.0.tar.gz", b"x")
    response = requests.post(clean_upstream.url, data=data, files=files,
                             verify=str(clean_upstream.ca_file), timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="pypi"'


def test_a_duplicate_upload_is_a_conflict(clean_upstream):
    """pypiserver refuses a second upload of the same file with `409 Conflict`."""
    data, files = _upload_form("dup_pkg-1.0.tar.gz", b"first")
    kwargs = dict(auth=("__token__", clean_upstream.token),
                  verify=str(clean_upstream.ca_file), timeout=10)
    assert requests.post(clean_upstream.url, data=data, files=files, **kwargs).status_code == 200
    data, files = _upload_form("dup_pkg-1.0.tar.gz", b"second")
    again = requests.post(clean_upstream.url, data=data, files=files, **kwargs)
    assert (again.status_code, again.reason) == (409, "Conflict")
    assert clean_upstream.files()["dup_pkg-1.0.tar.gz"] == hashlib.sha256(b"first").hexdigest()


def test_uploads_are_accepted_on_the_legacy_path(clean_upstream):
    """The upload endpoint also answers on /legacy/, the real index's path, and records it so."""
    data, files = _upload_form("legacy_path-1.0.tar.gz", b"content")
    response = requests.post(clean_upstream.legacy_url, data=data, files=files,
                             auth=("__token__", clean_upstream.token),
                             verify=str(clean_upstream.ca_file), timeout=10)
    assert response.status_code == 200
    assert "legacy_path-1.0.tar.gz" in clean_upstream.files()
    assert [r.path for r in clean_upstream.recordings()] == ["/legacy/"]


def test_an_injected_fault_answers_then_clears(clean_upstream):
    """set_fault(503, ..., count=1) answers the next request with 503, the one after passes."""
    clean_upstream.set_fault(503, "Service Unavailable", count=1)
    verify = str(clean_upstream.ca_file)
    first = requests.get(clean_upstream.url, verify=verify, timeout=10)
    second = requests.get(clean_upstream.url, verify=verify, timeout=10)
    assert (first.status_code, first.reason) == (503, "Service Unavailable")
    assert second.status_code == 200
    assert [r.faulted for r in clean_upstream.recordings()] == [True, False]


def test_an_injected_reason_phrase_is_sent_verbatim(clean_upstream):
    """A fault's reason phrase reaches the client unchanged (the real index explains errors there)."""
    reason = "File already exists ('demo_pkg-1.0.tar.gz', with blake2_256 hash 'abc')."
    clean_upstream.set_fault(400, reason)
    response = requests.get(clean_upstream.url, verify=str(clean_upstream.ca_file), timeout=10)
    assert (response.status_code, response.reason) == (400, reason)


def test_an_injected_delay_holds_the_answer(clean_upstream):
    """set_fault(delay=...) sleeps before answering, then forwards to pypiserver."""
    clean_upstream.set_fault(delay=0.4, count=1)
    start = time.monotonic()
    response = requests.get(clean_upstream.url, verify=str(clean_upstream.ca_file), timeout=10)
    assert time.monotonic() - start >= 0.4
    assert response.status_code == 200


def test_an_incomplete_body_is_recorded_and_not_stored(clean_upstream):
    """A request whose body stops short is recorded as incomplete and never reaches pypiserver."""
    context = clean_upstream.client_context()
    with socket.create_connection(("127.0.0.1", clean_upstream.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                        b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\npartial")
            # End of input without closing: a close with the answer unread can reach the server
            # as a reset, which discards the body it has not read yet.
            tls.shutdown(socket.SHUT_WR)
            [record] = clean_upstream.wait_recordings(1)
    assert record.body_complete is False and record.body == b"--b\r\npartial"
    assert record.content_length == 100000


def test_the_form_parser_is_strict():
    """parse_form reads a legacy body in order and rejects one cut before its close delimiter."""
    body = (f"\r\n--{LEGACY_BOUNDARY}\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\n"
            f"file_upload\r\n--{LEGACY_BOUNDARY}\r\nContent-Disposition: form-data; "
            f"name=\"content\"; filename=\"a-1.0.tar.gz\"\r\n\r\n").encode() + b"\r\n\x00\xff\r"
    body += f"\r\n--{LEGACY_BOUNDARY}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={LEGACY_BOUNDARY}"
    assert parse_form(content_type, body) == [
        (":action", "file_upload", None),
        ("content", b"\r\n\x00\xff\r", "a-1.0.tar.gz"),
    ]
    with pytest.raises(FormError):
        parse_form(content_type, body[:-8])


# The legacy client ----------------------------------------------------------------------------

FAKE_SSH = textwrap.dedent(
    '''\
    """A stand-in for `ssh ... submit@host` *and the gateway behind it*, used only to check the
    pypissh client shim in isolation: it ignores its arguments, reads one HTTP request from stdin
    framed by its Content-Length (never waiting for EOF), saves it, writes a notice to stderr and
    answers 200. The real end-to-end tests use the real ssh client and the real gateway."""
    import json, os, select, sys

    out = os.environ["FAKE_SSH_OUT"]
    stdin = sys.stdin.buffer
    head = b""
    while not head.endswith(b"\\r\\n\\r\\n"):
        line = stdin.readline()
        if not line:
            break
        head += line
    length = 0
    for line in head.split(b"\\r\\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    body = stdin.read(length)
    ready, _, _ = select.select([stdin], [], [], 0.2)
    early_eof = bool(ready) and os.read(stdin.fileno(), 1) == b""
    number = len([n for n in os.listdir(out) if n.endswith(".http")])
    with open(os.path.join(out, f"{number:03d}.json"), "w") as handle:
        json.dump({"argv": sys.argv[1:], "early_eof": early_eof,
                   "distutils_choice": os.environ.get("SETUPTOOLS_USE_DISTUTILS")}, handle)
    with open(os.path.join(out, f"{number:03d}.http"), "wb") as handle:
        handle.write(head + body)
    sys.stderr.write("notice from the fake gateway\\n")
    sys.stderr.flush()
    sys.stdout.buffer.write(b"HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n")
    sys.stdout.flush()
    '''
)


class FakeExchange:
    def __init__(self, number: int, directory: Path):
        raw = (directory / f"{number:03d}.http").read_bytes()
        meta = json.loads((directory / f"{number:03d}.json").read_text())
        self.argv = meta["argv"]
        self.early_eof = meta["early_eof"]
        self.distutils_choice = meta["distutils_choice"]
        head, _, self.body = raw.partition(b"\r\n\r\n")
        self.request_line, _, header_block = head.partition(b"\r\n")
        self.headers = http.client.parse_headers(io.BytesIO(header_block + b"\r\n\r\n"))

    def form(self):
        return parse_form(self.headers["Content-Type"], self.body)


@pytest.fixture
def fake_ssh(tmp_path):
    script = tmp_path / "fake_ssh.py"
    script.write_text(FAKE_SSH)
    out = tmp_path / "exchanges"
    out.mkdir()
    home = tmp_path / "home"
    write_pypirc(home)
    project = make_legacy_project(tmp_path / "demo", name="demo-pkg", version="1.0")

    def run(args, env=None):
        result = run_legacy(
            project, args, ssh_command=f"{sys.executable} {script}", home=home,
            env={"FAKE_SSH_OUT": str(out), **(env or {})}, timeout=60,
        )
        exchanges = [FakeExchange(i, out) for i in range(len(list(out.glob("*.http"))))]
        return result, exchanges, project

    return run


def test_pypissh_sends_a_distutils_upload_over_ssh(fake_ssh):
    """`sdist upload` writes the stock distutils HTTP request, in clear, into an ssh session."""
    result, [exchange], project = fake_ssh(["sdist", "upload"])
    assert result.returncode == 0, result.stderr
    assert "Server response (200): OK" in result.stdout
    assert "notice from the fake gateway" in result.stderr
    assert exchange.argv == ["-T", "-l", "submit", "upload.pypi.org"]
    assert exchange.early_eof is False
    assert exchange.request_line == b"POST /legacy/ HTTP/1.1"
    headers = exchange.headers
    assert headers["Host"] == "upload.pypi.org"
    assert headers["User-Agent"] == "Python-urllib/3.11"
    assert headers["Content-Type"] == f"multipart/form-data; boundary={LEGACY_BOUNDARY}"
    assert int(headers["Content-Length"]) == len(exchange.body)
    assert headers["Connection"] == "close"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"olduser:old-password").decode()
    form = exchange.form()
    assert [name for name, _, _ in form[:5]] == [
        ":action", "protocol_version", "name", "version", "content"]
    fields = {name: value for name, value, _ in form}
    assert fields[":action"] == "file_upload"
    sdist = (project / "dist" / "demo-pkg-1.0.tar.gz").read_bytes()
    assert fields["content"] == sdist
    assert fields["md5_digest"] == hashlib.md5(sdist).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{128}", fields["blake2_256_digest"])


def test_pypissh_register_sends_bare_lf_without_authorization(fake_ssh):
    """`register` sends a bare-LF `:action=submit` form and no Authorization header."""
    result, [exchange], _ = fake_ssh(["register"])
    assert result.returncode == 0, result.stderr
    assert "Server response (200): OK" in result.stdout
    assert "Authorization" not in exchange.headers
    assert exchange.headers["Content-Type"].endswith("; charset=utf-8")
    assert b"\r" not in exchange.body and exchange.body.startswith(b"\n--")
    fields = {name: value for name, value, _ in exchange.form()}
    assert fields[":action"] == "submit" and fields["name"] == "demo-pkg"


def test_pypissh_host_and_user_can_be_overridden(fake_ssh):
    """PYPISSH_HOST and PYPISSH_USER replace the URL's host and `submit` on the ssh line."""
    result, [exchange], _ = fake_ssh(
        ["register"], env={"PYPISSH_HOST": "gateway.test", "PYPISSH_USER": "legacy"})
    assert result.returncode == 0, result.stderr
    assert exchange.argv == ["-T", "-l", "legacy", "gateway.test"]
    assert exchange.headers["Host"] == "upload.pypi.org"


def test_pypissh_switches_to_the_stdlib_distutils(fake_ssh):
    """Started with setuptools' distutils in charge, the client re-executes with the stdlib one."""
    result, [exchange], _ = fake_ssh(["register"], env={"SETUPTOOLS_USE_DISTUTILS": "local"})
    assert result.returncode == 0, result.stderr
    assert exchange.distutils_choice == "stdlib"

"""Reading the index's simple API with `IndexClient`: the files of a project with their sha256,
from pypiserver's PEP 503 HTML and from a PEP 691 JSON page, always with verified TLS."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import os
import socket
import threading

import pytest
import requests

from gateway.upload.index import IndexClient, IndexFile, IndexUnavailable
from testbed import legacyrequests as lr
from testbed.tlsca import make_tls


# The clock of the clients that read the upload times below (in 2031): a time after them, so that
# none is "in the future" whatever today's date is.
LATER = dt.datetime(2032, 1, 1, tzinfo=dt.timezone.utc)


def _publish(upstream, name: str, version: str) -> tuple[str, bytes]:
    """Upload an sdist straight to the test upstream, as twine would; returns its file name and bytes."""
    content = lr.make_sdist(name, version)
    filename = f"{name.lower().replace('-', '_')}-{version}.tar.gz"
    response = requests.post(
        upstream.url, auth=("__token__", upstream.token), verify=str(upstream.ca_file), timeout=30,
        data={":action": "file_upload", "name": name, "version": version, "protocol_version": "1"},
        files={"content": (filename, content, "application/octet-stream")})
    assert response.status_code == 200, response.text
    return filename, content


def test_files_of_a_project_come_with_their_sha256(settings, upstream, project_name):
    """pypiserver's PEP 503 page: every file of the project, named as stored, with its sha256."""
    first = _publish(upstream, project_name, "1.0")
    second = _publish(upstream, project_name, "2.0")
    client = IndexClient(settings)
    try:
        files = client.files(project_name)
    finally:
        client.close()
    assert sorted(files, key=lambda f: f.filename) == [
        IndexFile(filename, hashlib.sha256(content).hexdigest(), None) for filename, content in (first, second)]


def test_a_project_the_index_does_not_know_has_no_files(settings, upstream):
    """A 404 from the simple API is an empty list, not an error."""
    client = IndexClient(settings)
    try:
        assert client.files("no-such-project-anywhere") == []
    finally:
        client.close()


def test_an_index_with_an_untrusted_certificate_cannot_be_read(make_settings, upstream, tmp_path, project_name):
    """Verification is never off: another CA's bundle gives IndexUnavailable naming the certificate."""
    client = IndexClient(make_settings(upstream_ca_bundle=str(make_tls(tmp_path / "other").ca_cert)))
    try:
        with pytest.raises(IndexUnavailable) as info:
            client.files(project_name)
    finally:
        client.close()
    assert info.value.reason.startswith(f"cannot read the index page {upstream.simple_url}")
    assert "its certificate cannot be verified" in info.value.reason


def test_an_unreachable_index_is_a_clear_error(make_settings):
    """Nothing listening at index_url: IndexUnavailable saying the connection was refused."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = IndexClient(make_settings(index_url=f"https://127.0.0.1:{port}/simple/"))
    with pytest.raises(IndexUnavailable) as info:
        client.files("anything")
    assert "connection refused" in info.value.reason


class _Pep691Index(http.server.BaseHTTPRequestHandler):
    """A stand-in for the real index's PEP 691 JSON pages (Warehouse cannot run here): one project,
    served as JSON to a client that asks for it, and recorded."""

    page = {
        "meta": {"api-version": "1.1"},
        "name": "json-demo",
        "files": [{
            "filename": "json_demo-1.0.tar.gz",
            "url": "https://files.example/json_demo-1.0.tar.gz",
            "hashes": {"sha256": "ab" * 32},
            "upload-time": "2031-03-10T09:17:00.123456Z",
        }],
        "versions": ["1.0"],
    }
    accepts: list[str] = []

    def do_GET(self):
        type(self).accepts.append(self.headers.get("Accept", ""))
        if self.path.rstrip("/") != "/simple/json-demo":
            self.send_error(404)
            return
        body = json.dumps(self.page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def json_index(tmp_path):
    tls = make_tls(tmp_path / "json-index")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pep691Index)
    server.socket = tls.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Pep691Index.accepts = []
    yield f"https://127.0.0.1:{server.server_address[1]}/simple/", tls
    server.shutdown()
    server.server_close()


def test_pep_691_json_is_asked_for_and_read(make_settings, json_index):
    """The client prefers JSON; a JSON page gives the files with sha256 and their upload time."""
    url, tls = json_index
    client = IndexClient(make_settings(index_url=url, upstream_ca_bundle=str(tls.ca_cert)), clock=lambda: LATER)
    try:
        files = client.files("JSON.Demo")
    finally:
        client.close()
    assert files == [IndexFile("json_demo-1.0.tar.gz", "ab" * 32,
                               dt.datetime(2031, 3, 10, 9, 17, 0, 123456, tzinfo=dt.timezone.utc))]
    assert _Pep691Index.accepts[0].startswith("application/vnd.pypi.simple.v1+json")


def test_html_and_json_pages_of_the_same_files_agree(make_settings, settings, upstream, project_name):
    """pypiserver's PEP 503 HTML and the testbed's PEP 691 JSON over the same folder list the same
    files and sha256; only the JSON carries upload times (each file's stored time)."""
    from testbed.json_index import JsonIndex

    published = [_publish(upstream, project_name, version) for version in ("1.0", "1.1")]
    stamp = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    for filename, _ in published:
        os.utime(upstream.packages_dir / filename, (stamp.timestamp(), stamp.timestamp()))
    html_client = IndexClient(settings)
    with JsonIndex(upstream.packages_dir, upstream.tls) as index:
        json_client = IndexClient(make_settings(index_url=index.url), clock=lambda: LATER)
        try:
            from_json = sorted(json_client.files(project_name), key=lambda f: f.filename)
            from_html = sorted(html_client.files(project_name), key=lambda f: f.filename)
        finally:
            json_client.close()
            html_client.close()
    expected = [(filename, hashlib.sha256(content).hexdigest()) for filename, content in published]
    assert [(f.filename, f.sha256) for f in from_html] == expected
    assert [(f.filename, f.sha256) for f in from_json] == expected
    assert [f.upload_time for f in from_html] == [None, None]
    assert [f.upload_time for f in from_json] == [stamp, stamp]


def test_a_json_page_of_an_unknown_major_version_is_unreadable(make_settings, json_index, monkeypatch):
    """PEP 691: a client must not guess at a major version it does not know; the reason names it."""
    url, tls = json_index
    monkeypatch.setattr(_Pep691Index, "page", {**_Pep691Index.page, "meta": {"api-version": "2.0"}})
    client = IndexClient(make_settings(index_url=url, upstream_ca_bundle=str(tls.ca_cert)))
    try:
        with pytest.raises(IndexUnavailable) as info:
            client.files("json-demo")
    finally:
        client.close()
    assert info.value.reason.startswith(f"cannot read the index page {url}json-demo/")
    assert "'2.0'" in info.value.reason

"""Requests as the historic clients really wrote them, sent byte-exact through real SSH sessions."""

from __future__ import annotations

import hashlib

import pytest

from testbed import legacyrequests as lr
from tests import warehouse_rules
from tests.helpers import recorded_events


def _reply(result) -> tuple[int, str]:
    status_line = result.stdout.split(b"\r\n", 1)[0].decode()
    _, code, reason = status_line.split(" ", 2)
    return int(code), reason


def _forwarded_form(upstream):
    (record,) = [r for r in upstream.recordings() if r.method == "POST"]
    return record.form()


def _assert_modern(form, content: bytes, name: str, metadata_version: str = "1.1"):
    names = [n for n, _v, _f in form]
    values = {n: v for n, v, _f in form}
    assert names[-1] == "content"
    assert values["content"] == content
    assert values["sha256_digest"] == hashlib.sha256(content).hexdigest()
    assert values["blake2_256_digest"] == hashlib.blake2b(content, digest_size=32).hexdigest()
    assert values["name"] == name and values["version"] == "1.0"
    assert values["metadata_version"] == metadata_version  # PKG-INFO's, not the form's 1.0
    assert values["protocol_version"] == "1" and "protcol_version" not in values
    assert not [n for n, v, _ in form if isinstance(v, str) and v.strip() in ("None", "UNKNOWN", "")]
    assert warehouse_rules.form_problems(form) == []
    return values


@pytest.fixture
def send(alice, ssh_client, upstream):
    upstream.clear_recordings()
    client = ssh_client()
    return lambda data: client.run(data=data)


def test_python2_bare_lf_content_first_request_is_forwarded(send, upstream, project_name):
    """Bare LF, content first, `;filename=`, `protcol_version`, no User-Agent, only md5, UNKNOWN values."""
    content = lr.make_sdist(project_name, "1.0")
    result = send(lr.python2_upload(project_name, "1.0", content))
    assert _reply(result)[0] == 200, result.stdout + result.stderr
    values = _assert_modern(_forwarded_form(upstream), content, project_name)
    assert values["summary"] == "A legacy package"  # from PKG-INFO, not the form's UNKNOWN
    assert values["filetype"] == "sdist" and values["pyversion"] == "source"


def test_python3_stock_request_with_long_blake2_and_none_values_is_forwarded(send, upstream, project_name):
    """The 128-character BLAKE2 and literal `None` values of Python 3 distutils are replaced."""
    content = lr.make_sdist(project_name, "1.0")
    request = lr.python3_upload(project_name, "1.0", content)
    assert hashlib.blake2b(content).hexdigest().encode() in request  # the client bug is present
    result = send(request)
    assert _reply(result)[0] == 200, result.stdout + result.stderr
    _assert_modern(_forwarded_form(upstream), content, project_name)


def test_python2_request_without_user_agent_is_recorded(send, gateway, project_name):
    """A request with no User-Agent is accepted and recorded as such."""
    content = lr.make_sdist(project_name, "1.0")
    assert _reply(send(lr.python2_upload(project_name, "1.0", content, user_agent=None)))[0] == 200
    (event,) = recorded_events(gateway.registry, account_name="alice")
    assert event.user_agent is None and event.outcome == "forwarded"


def test_md5_mismatch_is_refused_and_nothing_forwarded(send, upstream, project_name):
    """A file whose md5 disagrees with the client's md5_digest was damaged: refused, not forwarded."""
    content = lr.make_sdist(project_name, "1.0")
    request = lr.python3_upload(project_name, "1.0", content, md5_digest="0" * 32)
    code, reason = _reply(send(request))
    assert code == 400
    assert "MD5" in reason and "upload it again" in reason
    assert upstream.recordings() == []


def test_unnormalised_sdist_name_is_sent_under_pep625_name(send, upstream, project_name):
    """`Foo-Bar-1.0.tar.gz` as legacy distutils names it goes upstream as `foo_bar-1.0.tar.gz`, bytes unchanged."""
    name = project_name.replace("t-", "Mixed.Case_")
    content = lr.make_sdist(name, "1.0")
    assert _reply(send(lr.python3_upload(name, "1.0", content)))[0] == 200
    (_n, _v, filename) = _forwarded_form(upstream)[-1]
    from packaging.utils import canonicalize_name

    assert filename == canonicalize_name(name).replace("-", "_") + "-1.0.tar.gz"
    assert upstream.files()[filename] == hashlib.sha256(content).hexdigest()


def test_zip_sdist_is_refused_early_with_the_build_advice(send, upstream, project_name):
    """What the gateway cannot fix (a .zip sdist) is refused before forwarding, saying what to run."""
    content = b"PK\x05\x06" + b"\0" * 18
    code, reason = _reply(send(lr.python3_upload(project_name, "1.0", content, filename=f"{project_name}-1.0.zip")))
    assert code == 400
    assert "only as .tar.gz" in reason and "`python -m build`" in reason
    assert upstream.recordings() == []


def test_non_pep440_version_is_refused_early(send, upstream, project_name):
    """A version that is not PEP 440 cannot be fixed by renaming: refused with the reason."""
    content = lr.make_sdist(project_name, "1.0-beta_weird!")
    code, reason = _reply(send(lr.python3_upload(project_name, "1.0-beta_weird!", content)))
    assert code == 400
    assert "PEP 440" in reason
    assert upstream.recordings() == []


def test_form_disagreeing_with_the_file_forwards_the_file_and_notes_the_fields(send, gateway, upstream, project_name):
    """Where the legacy form says otherwise than PKG-INFO, PKG-INFO is forwarded and the event names the fields."""
    content = lr.make_sdist(project_name, "1.0")
    request = lr.python3_upload(project_name, "1.0", content, summary="Not what PKG-INFO says", author="Someone Else")
    assert _reply(send(request))[0] == 200
    values = _assert_modern(_forwarded_form(upstream), content, project_name)
    assert (values["summary"], values["author"]) == ("A legacy package", "Old Timer")
    (event,) = recorded_events(gateway.registry, account_name="alice")
    assert event.outcome == "forwarded"
    assert "disagreed with the file's metadata on summary, author" in event.error


def test_latin1_pkg_info_is_forwarded_as_text_and_noted(send, gateway, upstream, project_name):
    """A Latin-1 PKG-INFO from a Python 2 client arrives as the author's name; the event says how it was read."""
    content = lr.make_sdist(project_name, "1.0", metadata_version="1.2", extra_headers="Maintainer: José Gonçalves\n",
                            encoding="latin-1")
    assert _reply(send(lr.python2_upload(project_name, "1.0", content)))[0] == 200
    values = _assert_modern(_forwarded_form(upstream), content, project_name, metadata_version="1.2")
    assert values["maintainer"] == "José Gonçalves"
    (event,) = recorded_events(gateway.registry, account_name="alice")
    assert event.outcome == "forwarded" and "not UTF-8; read as latin-1" in event.error

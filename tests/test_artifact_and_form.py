"""Reading the artifact and rebuilding the upload form (pure, no I/O beyond an in-memory file)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile

import pytest

from gateway.errors import ArtifactError, BadRequest
from gateway.upload.artifact import check_filetype, clean_filename, inspect, sdist_filename
from gateway.upload.form import MultipartBody, check_client_digests, disagreements, rebuild
from gateway.upload.multipart import Digests, Form
from testbed import legacyrequests as lr
from testbed.recordings import parse_form


def _digests(data: bytes) -> Digests:
    return Digests(len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(),
                   hashlib.blake2b(data, digest_size=32).hexdigest())


def test_sdist_metadata_comes_from_pkg_info():
    """Name, version, metadata version and classifiers are read from PKG-INFO; UNKNOWN is dropped."""
    data = lr.make_sdist("Foo.Bar", "1.0", classifiers=["A :: B", "C :: D"])
    found = inspect(io.BytesIO(data), "Foo.Bar-1.0.tar.gz")
    meta = dict(found.metadata)
    assert (found.name, found.version, found.filetype, found.pyversion) == ("Foo.Bar", "1.0", "sdist", "source")
    assert meta["metadata_version"] == "1.1"
    assert [v for k, v in found.metadata if k == "classifiers"] == ["A :: B", "C :: D"]
    assert "home_page" not in meta and "license" not in meta and "platform" not in meta
    assert found.upload_filename == "foo_bar-1.0.tar.gz"


@pytest.mark.parametrize("name, version, expected", [
    ("Foo-Bar", "1.0", "foo_bar-1.0.tar.gz"),
    ("zope.interface", "5.0", "zope_interface-5.0.tar.gz"),
    ("Django_Thing", "2.0.0", "django_thing-2.0.0.tar.gz"),
])
def test_pep625_sdist_names(name, version, expected):
    """The sdist file name the index requires: normalised name with underscores, PEP 440 version."""
    assert sdist_filename(name, version) == expected


def test_version_is_normalised_in_the_file_name():
    """A legacy `1.0-beta1` becomes `1.0b1` in the name the upstream sees."""
    found = inspect(io.BytesIO(lr.make_sdist("pkg", "1.0-beta1")), "pkg-1.0-beta1.tar.gz")
    assert found.upload_filename == "pkg-1.0b1.tar.gz" and found.version == "1.0b1"


def test_archive_whose_metadata_lies_is_refused():
    """A file named for one project whose PKG-INFO names another is refused."""
    with pytest.raises(ArtifactError, match="does not match the metadata"):
        inspect(io.BytesIO(lr.make_sdist("other", "1.0")), "pkg-1.0.tar.gz")


def test_sdist_without_pkg_info_is_refused():
    """An archive with no <name>-<version>/PKG-INFO is refused with the build advice."""
    data = lr.make_sdist("pkg", "1.0", top="pkg-1.0/nested")
    with pytest.raises(ArtifactError, match="python -m build --sdist"):
        inspect(io.BytesIO(data), "pkg-1.0.tar.gz")


def test_not_a_gzip_is_refused():
    """Random bytes named .tar.gz are refused as unreadable."""
    with pytest.raises(ArtifactError, match="not a readable .tar.gz"):
        inspect(io.BytesIO(b"\x00" * 100), "pkg-1.0.tar.gz")


def _wheel(name: str, version: str, meta_name: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {meta_name or name}\nVersion: {version}\nSummary: s\n")
        archive.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return buffer.getvalue()


def test_wheel_metadata_and_pyversion():
    """A wheel keeps its file name; pyversion comes from its tag."""
    found = inspect(io.BytesIO(_wheel("pkg", "2.0")), "pkg-2.0-py2.py3-none-any.whl")
    assert (found.filetype, found.pyversion, found.upload_filename) == ("bdist_wheel", "py2.py3", "pkg-2.0-py2.py3-none-any.whl")
    assert dict(found.metadata)["metadata_version"] == "2.1"


def test_wheel_whose_metadata_names_another_project_is_refused():
    """A wheel whose METADATA disagrees with its file name is refused."""
    with pytest.raises(ArtifactError, match="does not match"):
        inspect(io.BytesIO(_wheel("pkg", "2.0", meta_name="evil")), "pkg-2.0-py3-none-any.whl")


@pytest.mark.parametrize("filename", ["../../etc/passwd.tar.gz", "C:\\x\\pkg-1.0.tar.gz", "a\x00b.tar.gz",
                                      "pkg-1.0.tar.gz\r\nX: y", ".hidden.tar.gz", "pkg..1.0.tar.gz"])
def test_hostile_file_names_are_refused(filename):
    """Path traversal and control characters in file names are refused, and shown escaped."""
    with pytest.raises(ArtifactError, match="not a plain distribution file name") as caught:
        clean_filename(filename)
    assert "\n" not in caught.value.reason and "\x00" not in caught.value.reason


@pytest.mark.parametrize("filename, message", [
    ("pkg-1.0.zip", "only as .tar.gz"), ("pkg-1.0.tar.bz2", "only as .tar.gz"), ("pkg-1.0.egg", "no longer accepts eggs"),
    ("pkg-1.0.linux-x86_64.exe", "no longer accepts Windows installers (.exe)"),
    ("pkg-1.0.win32.msi", "no longer accepts Windows installers (.msi)"),
    ("pkg-1.0-1.noarch.rpm", "no longer accepts RPM packages"), ("pkg-1.0.txt", "is not a distribution"),
])
def test_formats_the_index_refuses_are_refused_early(filename, message):
    """Formats the index no longer takes are refused, saying what it accepts and how to build it."""
    with pytest.raises(ArtifactError, match=re.escape(message)) as caught:
        inspect(io.BytesIO(b""), filename)
    assert ".tar.gz" in caught.value.reason and "wheels (.whl)" in caught.value.reason
    assert "`python -m build`" in caught.value.reason


@pytest.mark.parametrize("filetype, kind", [
    ("bdist_dumb", "bdist_dumb archives"), ("bdist_egg", "eggs"), ("bdist_wininst", "Windows installers (.exe)"),
    ("bdist_msi", "Windows installers (.msi)"), ("bdist_rpm", "RPM packages"), ("bdist_dmg", "macOS disk images"),
    ("bdist_nsi", "files of type 'bdist_nsi'"), ("evil\r\nX: y", "files of type 'unknown'"),
])
def test_filetypes_the_index_refuses_are_refused_before_reading(filetype, kind):
    """The form's own filetype, if the index no longer takes it, is refused with what it accepts."""
    with pytest.raises(ArtifactError, match=re.escape(f"no longer accepts {kind}")) as caught:
        check_filetype(filetype, "pkg-1.0.linux-x86_64.tar.gz")
    assert "source distributions (.tar.gz) and wheels (.whl)" in caught.value.reason


@pytest.mark.parametrize("filetype", ["sdist", "bdist_wheel", "", "UNKNOWN", None])
def test_filetypes_the_index_takes_pass(filetype):
    """sdist, bdist_wheel and an absent filetype are left to the file itself."""
    check_filetype(filetype, "pkg-1.0.tar.gz")


@pytest.mark.parametrize("prefix", ["./usr/lib/python3.11/site-packages/", "./"])
def test_bdist_dumb_tree_is_named_for_what_it_is(prefix):
    """A .tar.gz of installed files (bdist_dumb, absolute or --relative) is not "an sdist without PKG-INFO"."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in ((f"{prefix}pkg-1.0-py3.11.egg-info", b"Name: pkg\n"), (f"{prefix}pkg.py", b"x = 1\n")):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with pytest.raises(ArtifactError, match="no longer accepts bdist_dumb archives") as caught:
        inspect(io.BytesIO(buffer.getvalue()), "pkg-1.0.linux-x86_64.tar.gz")
    assert "PKG-INFO" not in caught.value.reason


def test_rebuilt_form_has_fresh_digests_and_content_last():
    """The rebuilt body carries the artifact's metadata, 32-byte BLAKE2, sha256 and content last."""
    data = lr.make_sdist("Foo-Bar", "1.0")
    found = inspect(io.BytesIO(data), "Foo-Bar-1.0.tar.gz")
    legacy = Form(fields=[("comment", "None"), ("md5_digest", hashlib.md5(data).hexdigest())])
    upstream_form = rebuild(legacy, found, _digests(data))
    body = MultipartBody(upstream_form, io.BytesIO(data), len(data))
    raw = b"".join(body)
    assert len(raw) == len(body)
    parts = parse_form(body.content_type, raw)
    assert parts[-1] == ("content", data, "foo_bar-1.0.tar.gz")
    values = {name: value for name, value, _ in parts}
    assert values["blake2_256_digest"] == hashlib.blake2b(data, digest_size=32).hexdigest()
    assert values["sha256_digest"] == hashlib.sha256(data).hexdigest()
    assert values[":action"] == "file_upload" and values["protocol_version"] == "1"
    assert "comment" not in values  # "None" is not a value


def test_client_sha256_mismatch_is_refused():
    """A sha256_digest from the client that disagrees with the file is refused."""
    with pytest.raises(BadRequest, match="SHA-256"):
        check_client_digests(Form(fields=[("sha256_digest", "0" * 64)]), _digests(b"data"))


def test_client_long_blake2_is_ignored():
    """The 128-character BLAKE2 distutils sends is not compared (it is a known client bug)."""
    check_client_digests(Form(fields=[("blake2_256_digest", "f" * 128)]), _digests(b"data"))


def test_sdist_description_arrives_without_the_folding_prefixes():
    """A distutils-folded Description in PKG-INFO is forwarded as the author's text."""
    text = "Title\n=====\n\nSome text.\n"
    found = inspect(io.BytesIO(lr.make_sdist("pkg", "1.0", description=text)), "pkg-1.0.tar.gz")
    assert [v for k, v in found.metadata if k == "description"] == [text]


def test_latin1_pkg_info_is_read_and_marked():
    """A PKG-INFO that is not UTF-8 is read as Latin-1, and the artifact says so."""
    data = lr.make_sdist("pkg", "1.0", extra_headers="Maintainer: José Gonçalves\n", encoding="latin-1")
    found = inspect(io.BytesIO(data), "pkg-1.0.tar.gz")
    assert dict(found.metadata)["maintainer"] == "José Gonçalves"
    assert found.metadata_encoding == "latin-1"


def test_form_agreeing_with_the_artifact_has_no_disagreements():
    """The form a stock client sends (placeholders, CRLF, a normalisable version) agrees."""
    found = inspect(io.BytesIO(lr.make_sdist("pkg", "1.0-beta1", classifiers=["A :: B"])), "pkg-1.0-beta1.tar.gz")
    form = Form(fields=[("name", "pkg"), ("version", "1.0-beta1"), ("summary", "A legacy package\r\n"),
                        ("author", "Old Timer"), ("license", "UNKNOWN"), ("home_page", "None"),
                        ("description", ""), ("classifiers", "A :: B")])
    assert disagreements(form, found) == ()


def test_form_disagreeing_with_the_artifact_names_the_fields():
    """Fields whose form values differ from the artifact's are named, the form's order kept stable."""
    found = inspect(io.BytesIO(lr.make_sdist("pkg", "1.0", classifiers=["A :: B"])), "pkg-1.0.tar.gz")
    form = Form(fields=[("name", "PKG"), ("version", "1.1"), ("summary", "Another summary"), ("author", "Old Timer"),
                        ("classifiers", "A :: B"), ("classifiers", "C :: D")])
    assert disagreements(form, found) == ("name", "version", "summary", "classifiers")

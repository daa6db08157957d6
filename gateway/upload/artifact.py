"""What the uploaded file says about itself: kind, name, version and core metadata.

The modern upload API trusts the artifact, not the legacy form (whose metadata_version is hard-coded
to 1.0 by distutils and whose values may be "None"), so the gateway reads PKG-INFO/METADATA from the
file itself, as twine does. Archives are read with bounds, so a crafted file (a gzip bomb, a
metadata member of gigabytes) costs a bounded amount of time and memory.
"""

from __future__ import annotations

import gzip
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, BinaryIO

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from gateway.errors import ArtifactError
from gateway.upload.coremetadata import UTF8, MetadataValue, parse_metadata

MIB = 1024 * 1024
MAX_METADATA_BYTES = 4 * MIB
# How far into a .tar.gz (decompressed) we look for PKG-INFO before calling it hostile.
MAX_TAR_SCAN_BYTES = 2 * 1024 * 1024 * 1024
MAX_TAR_MEMBERS = 100_000
# tarfile reads a long-name or pax header member whole; a real one is a few hundred bytes.
MAX_TAR_HEADER_BYTES = 1024 * 1024
# zipfile builds an object per central-directory entry (about 550 bytes each); 8 MiB of directory
# is some 40,000 files with typical paths (the largest wheels on the index have about 20,000) and
# bounds a crafted directory of tiny entries to about 100 MB.
MAX_ZIP_DIRECTORY_BYTES = 8 * 1024 * 1024

_SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
# Placeholders old tools wrote for unset metadata; the modern API rejects them as values.
PLACEHOLDERS = {"UNKNOWN", "None", ""}

# Raw metadata keys (packaging.metadata) -> upload form field names (Warehouse's names).
FORM_NAMES = {
    "platforms": "platform",
    "supported_platforms": "supported_platform",
    "license_files": "license_file",
}
# The legacy clients' `filetype` for the kinds of file the index no longer takes, and how the
# refusal names them; the index takes sdists (.tar.gz) and wheels only.
ACCEPTED_FILETYPES = ("sdist", "bdist_wheel")
REFUSED_KINDS = {
    "bdist_dumb": "bdist_dumb archives (trees of installed files)",
    "bdist_egg": "eggs",
    "bdist_wininst": "Windows installers (.exe)",
    "bdist_msi": "Windows installers (.msi)",
    "bdist_rpm": "RPM packages",
    "bdist_dmg": "macOS disk images",
}
REFUSED_EXTENSIONS = {".egg": "bdist_egg", ".exe": "bdist_wininst", ".msi": "bdist_msi", ".rpm": "bdist_rpm",
                      ".dmg": "bdist_dmg"}
_FILETYPE_SHOWN = re.compile(r"[A-Za-z0-9_.-]{1,32}")
METADATA_ORDER = (
    "metadata_version", "name", "version", "summary", "description", "description_content_type",
    "keywords", "home_page", "download_url", "author", "author_email", "maintainer",
    "maintainer_email", "license", "license_expression", "license_files", "classifiers",
    "platforms", "supported_platforms", "requires_python", "requires_dist", "provides_dist",
    "obsoletes_dist", "requires_external", "project_urls", "provides_extra", "dynamic",
    "requires", "provides", "obsoletes",
)


@dataclass(frozen=True)
class Artifact:
    filetype: str  # "sdist" | "bdist_wheel"
    pyversion: str  # "source" for sdists, the wheel's python tag otherwise
    client_filename: str
    upload_filename: str  # what the upstream will be told; sdists get the PEP 625 name
    name: str
    version: str
    metadata: tuple[tuple[str, str], ...]  # (form field, value) in a stable order
    # How the metadata file was decoded: UTF-8 as core metadata requires, or Latin-1 (old Python 2
    # distutils wrote byte strings as they were), which the upload event records.
    metadata_encoding: str = UTF8

    @property
    def project(self) -> str:
        return canonicalize_name(self.name)


def clean_filename(raw: str) -> str:
    """A client-supplied file name, or a refusal if it is not a plain one.

    Clients send a base name; a path, a control character or ".." is an attempt, not an accident.
    """
    if not _SAFE_FILENAME.fullmatch(raw) or ".." in raw:
        shown = raw.encode("unicode_escape").decode("ascii")[:80]
        raise ArtifactError(unsafe_filename(shown))
    return raw


def check_filetype(filetype: str | None, filename: str) -> None:
    """Refuse, before the file is read, a kind of distribution the client itself names and the
    index no longer takes (bdist_dumb, bdist_egg, bdist_wininst...)."""
    declared = (filetype or "").strip()
    if declared in PLACEHOLDERS or declared in ACCEPTED_FILETYPES:
        return
    kind = REFUSED_KINDS.get(declared)
    if kind is None:
        shown = declared if _FILETYPE_SHOWN.fullmatch(declared) else "unknown"
        kind = f"files of type '{shown}'"
    raise ArtifactError(distribution_kind_refused(filename, kind))


def _looks_installed(path: str) -> bool:
    """A member of a built tree (bdist_dumb): installed files, with their metadata beside them
    as *.egg-info, rather than a source tree under <name>-<version>/."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return any(part in ("site-packages", "dist-packages") for part in parts) or (
        len(parts) == 1 and parts[0].endswith(".egg-info"))


def sdist_filename(name: str, version: str) -> str:
    """The file name the index requires for a source distribution (PEP 625)."""
    return f"{canonicalize_name(name).replace('-', '_')}-{version}.tar.gz"


def _loose(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _read_limited(handle: IO[bytes], size: int | None, what: str) -> bytes:
    too_large = ArtifactError(metadata_too_large(what, MAX_METADATA_BYTES // MIB))
    if size is not None and size > MAX_METADATA_BYTES:
        raise too_large
    data = handle.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise too_large
    return data


class _HeaderTooLarge(Exception):
    pass


class _BoundedReads:
    """The decompressed tar stream, refusing any single read larger than a metadata member.

    tarfile reads GNU long-name and pax headers whole, whatever size they declare: one crafted
    header would otherwise decompress gigabytes into memory.
    """

    def __init__(self, stream: gzip.GzipFile):
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_METADATA_BYTES + MAX_TAR_HEADER_BYTES:
            raise _HeaderTooLarge()
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _sdist_pkg_info(fileobj: BinaryIO, filename: str) -> bytes:
    fileobj.seek(0)
    installed = False
    try:
        with gzip.GzipFile(fileobj=fileobj, mode="rb") as stream, \
                tarfile.open(fileobj=_BoundedReads(stream), mode="r:") as archive:  # type: ignore[call-overload]
            for _ in range(MAX_TAR_MEMBERS):
                member = archive.next()
                if member is None or archive.offset > MAX_TAR_SCAN_BYTES:
                    break
                archive.members.clear()  # tarfile remembers every member; we need none of them
                parts = member.name.strip("/").split("/")
                installed = installed or _looks_installed(member.name)
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    handle = archive.extractfile(member)
                    assert handle is not None
                    return _read_limited(handle, member.size, "PKG-INFO")
    except _HeaderTooLarge:
        raise ArtifactError(sdist_header_too_large(MAX_TAR_HEADER_BYTES // MIB)) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        raise ArtifactError(sdist_unreadable()) from None
    if installed:
        raise ArtifactError(distribution_kind_refused(filename, REFUSED_KINDS["bdist_dumb"]))
    raise ArtifactError(sdist_without_pkg_info())


def _zip_directory_size(fileobj: BinaryIO) -> int | None:
    """The central directory size the end record declares (zip64 aware), None if none is found."""
    fileobj.seek(0, 2)
    end = fileobj.tell()
    start = max(0, end - (65535 + 22 + 20))
    fileobj.seek(start)
    tail = fileobj.read()
    index = tail.rfind(b"PK\x05\x06")
    if index < 0 or len(tail) < index + 22:
        return None
    size = struct.unpack("<I", tail[index + 12:index + 16])[0]
    locator = index - 20
    if size == 0xFFFFFFFF and locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        offset = struct.unpack("<Q", tail[locator + 8:locator + 16])[0]
        fileobj.seek(offset)
        record = fileobj.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            size = struct.unpack("<Q", record[40:48])[0]
    return size


def _wheel_metadata(fileobj: BinaryIO, name: str, version: str) -> bytes:
    directory = _zip_directory_size(fileobj)
    if directory is not None and directory > MAX_ZIP_DIRECTORY_BYTES:
        raise ArtifactError(wheel_directory_too_large(MAX_ZIP_DIRECTORY_BYTES // MIB))
    fileobj.seek(0)
    try:
        with zipfile.ZipFile(fileobj) as archive:
            candidates = [
                info for info in archive.infolist()
                if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
            ]
            if len(candidates) != 1:
                raise ArtifactError(wheel_without_metadata())
            info = candidates[0]
            with archive.open(info) as handle:
                return _read_limited(handle, info.file_size, "METADATA")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError):
        raise ArtifactError(wheel_unreadable()) from None


def _form_values(raw: Mapping[str, MetadataValue]) -> tuple[tuple[str, str], ...]:
    values: list[tuple[str, str]] = []
    for key in METADATA_ORDER:
        value = raw.get(key)
        if value is None:
            continue
        field = FORM_NAMES.get(key, key)
        if key == "keywords":
            items = [k for k in value if k not in PLACEHOLDERS]
            if items:
                values.append((field, ", ".join(items)))
        elif isinstance(value, dict):  # project_urls
            for label, url in value.items():
                if url not in PLACEHOLDERS:
                    values.append((field, f"{label}, {url}"))
        elif isinstance(value, list):
            values.extend((field, item) for item in value if item.strip() not in PLACEHOLDERS)
        elif str(value).strip() not in PLACEHOLDERS:
            values.append((field, str(value)))
    return tuple(values)


def _check_version(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        raise ArtifactError(not_pep440(version)) from None


def inspect(fileobj: BinaryIO, client_filename: str) -> Artifact:
    """Identify the artifact and read its metadata; refuse what the index would refuse anyway."""
    filename = clean_filename(client_filename)
    lower = filename.lower()
    if lower.endswith(".whl"):
        return _inspect_wheel(fileobj, filename)
    if lower.endswith((".tar.gz", ".tgz")):
        return _inspect_sdist(fileobj, filename)
    if lower.endswith((".zip", ".tar.bz2", ".tar.xz", ".tar", ".tar.z")):
        raise ArtifactError(sdist_format_refused(filename))
    extension = lower[lower.rfind("."):] if "." in lower else ""
    if extension in REFUSED_EXTENSIONS:
        raise ArtifactError(distribution_kind_refused(filename, REFUSED_KINDS[REFUSED_EXTENSIONS[extension]]))
    raise ArtifactError(not_a_distribution(filename))


def _name_and_version(raw: Mapping[str, MetadataValue], filename: str) -> tuple[str, str]:
    name, version = raw.get("name"), raw.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        raise ArtifactError(metadata_without_name(filename))
    return name, version


def _inspect_sdist(fileobj: BinaryIO, filename: str) -> Artifact:
    decoded = parse_metadata(_sdist_pkg_info(fileobj, filename))
    raw = decoded.raw
    name, version = _name_and_version(raw, filename)
    normalized_version = _check_version(version)
    stem = filename[: -len(".tar.gz")] if filename.lower().endswith(".tar.gz") else filename[: -len(".tgz")]
    candidates = {_loose(f"{name}-{version}"), _loose(f"{name}-{normalized_version}")}
    if _loose(stem) not in candidates:
        raise ArtifactError(sdist_name_mismatch(filename, name, version))
    raw["version"] = normalized_version
    return Artifact(
        filetype="sdist",
        pyversion="source",
        client_filename=filename,
        upload_filename=sdist_filename(name, normalized_version),
        name=name,
        version=normalized_version,
        metadata=_form_values(raw),
        metadata_encoding=decoded.encoding,
    )


def _inspect_wheel(fileobj: BinaryIO, filename: str) -> Artifact:
    try:
        wheel_name, wheel_version, _build, _tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise ArtifactError(wheel_name_invalid(filename, str(exc))) from None
    decoded = parse_metadata(_wheel_metadata(fileobj, wheel_name, str(wheel_version)))
    raw = decoded.raw
    name, version = _name_and_version(raw, filename)
    if canonicalize_name(name) != wheel_name or Version(_check_version(version)) != wheel_version:
        raise ArtifactError(wheel_name_mismatch(filename, name, version))
    pyversion = filename[:-4].split("-")[-3]
    return Artifact(
        filetype="bdist_wheel",
        pyversion=pyversion,
        client_filename=filename,
        upload_filename=filename,
        name=name,
        version=version,
        metadata=_form_values(raw),
        metadata_encoding=decoded.encoding,
    )


# -- reason phrases -------------------------------------------------------------------------------
BUILD = "`python -m build`"


BUILD_SDIST = "`python -m build --sdist`"


def unsafe_filename(shown: str) -> str:
    return (
        f"the file name '{shown}' is not a plain distribution file name; "
        f"upload the file {BUILD} writes to dist/"
    )


def metadata_too_large(member: str, mib: int) -> str:
    return f"the {member} inside the file is larger than {mib} MiB; rebuild it with {BUILD}"


def sdist_header_too_large(mib: int) -> str:
    return (
        f"the source archive has a member header of more than {mib} MiB, which no build tool writes; "
        f"rebuild it with {BUILD_SDIST}"
    )


def sdist_unreadable() -> str:
    return f"the file is not a readable .tar.gz archive; rebuild it with {BUILD_SDIST}"


def sdist_without_pkg_info() -> str:
    return f"the source archive has no <name>-<version>/PKG-INFO; rebuild it with {BUILD_SDIST}"


def wheel_directory_too_large(mib: int) -> str:
    return (
        f"the wheel's list of files is larger than {mib} MiB, more than this gateway reads; "
        "upload the wheel with twine"
    )


def wheel_without_metadata() -> str:
    return f"the wheel has no single *.dist-info/METADATA; rebuild it with {BUILD}"


def wheel_unreadable() -> str:
    return f"the wheel is not a readable zip archive; rebuild it with {BUILD}"


def wheel_name_invalid(filename: str, problem: str) -> str:
    return f"'{filename}' is not a valid wheel file name ({problem})"


def not_pep440(version: str) -> str:
    return (
        f"version '{version[:40]}' is not a PEP 440 version, which the index requires; "
        f"use a version like 1.0 or 1.0.post1 and build with {BUILD}"
    )


ACCEPTED = "it accepts source distributions (.tar.gz) and wheels (.whl), which `python -m build` makes"


def sdist_format_refused(filename: str) -> str:
    return (
        f"'{filename}': the index accepts source distributions only as .tar.gz, and built ones only as "
        f"wheels (.whl); `python -m build` makes both, and `setup.py sdist --formats=gztar upload` the first"
    )


def distribution_kind_refused(filename: str, kind: str) -> str:
    return f"'{filename}': the index no longer accepts {kind}; {ACCEPTED}"


def not_a_distribution(filename: str) -> str:
    return f"'{filename}' is not a distribution the index accepts; {ACCEPTED}"


def metadata_without_name(filename: str) -> str:
    return f"'{filename}' has metadata without a Name or Version; rebuild it with {BUILD}"


def sdist_name_mismatch(filename: str, name: str, version: str) -> str:
    return (
        f"'{filename}' does not match the metadata inside it ({name} {version}); "
        f"upload the file exactly as {BUILD_SDIST} wrote it"
    )


def wheel_name_mismatch(filename: str, name: str, version: str) -> str:
    return f"'{filename}' does not match the metadata inside it ({name} {version}); rebuild the wheel with {BUILD}"

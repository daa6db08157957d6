"""A stand-in for the package index's validation of an upload form, which cannot run here.

The real index (Warehouse) validates every upload before it stores anything; its rules are public
(the core metadata specification, and Warehouse's `warehouse/forklift/metadata.py` and `legacy.py`).
This module is our own reading of the rules that decide whether a legacy upload, rebuilt by the
gateway, would be accepted. pypiserver, the local test upstream, takes nearly anything, so a test
that claims "the index would accept this" checks the forwarded form here as well.

    assert warehouse_rules.problems(fields) == []

`fields` maps each form field to its values in order (a multipart form's repeated parts), as the
upstream received them; `content` may be among them and is ignored. Each problem is one line, in
the spirit of the index's reason phrases. A rule left out here is one the index has and this
stand-in does not check: passing is necessary, not sufficient.
"""

from __future__ import annotations

import email.utils
import io
import re
import sys
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import email_validator
import readme_renderer.markdown
import readme_renderer.rst
import readme_renderer.txt
import trove_classifiers
from packaging.metadata import Metadata
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# Core metadata versions the index has support for.
METADATA_VERSIONS = {"1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4"}
# The index takes source distributions and wheels only (eggs and installers went long ago).
FILETYPES = {"sdist", "bdist_wheel"}
SUMMARY_LIMIT = 512
STDLIB_NAMES = {canonicalize_name(module) for module in sys.stdlib_module_names}
PROJECT_URL_LABEL_LIMIT = 32
HEX_DIGESTS = {"md5_digest": 32, "sha256_digest": 64, "blake2_256_digest": 64}
# Form fields that carry one value each; a repeat is a malformed upload.
SINGLE = {"metadata_version", "name", "version", "summary", "description", "description_content_type",
          "keywords", "home_page", "download_url", "author", "author_email", "maintainer", "maintainer_email",
          "license", "license_expression", "requires_python", "filetype", "pyversion", "comment",
          "md5_digest", "sha256_digest", "blake2_256_digest", ":action", "protocol_version"}
# Form names (Warehouse's) of the core metadata fields that are lists, as packaging's raw keys.
LISTS = {"classifiers": "classifiers", "platform": "platforms", "supported_platform": "supported_platforms",
         "requires_dist": "requires_dist", "provides_dist": "provides_dist", "obsoletes_dist": "obsoletes_dist",
         "requires_external": "requires_external", "provides_extra": "provides_extra", "dynamic": "dynamic",
         "license_file": "license_files", "requires": "requires", "provides": "provides", "obsoletes": "obsoletes"}
TEXT = {"metadata_version", "name", "version", "summary", "description", "description_content_type",
        "home_page", "download_url", "author", "author_email", "maintainer", "maintainer_email", "license",
        "license_expression", "requires_python"}
CONTENT_TYPES = {"text/plain", "text/x-rst", "text/markdown"}
MARKDOWN_VARIANTS = {"GFM", "CommonMark"}
DESCRIPTION_HELP = "See https://pypi.org/help/#description-content-type for more information."


def form_problems(form: Sequence[tuple[str, str | bytes, str | None]]) -> list[str]:
    """`problems` of a form as `Recording.form()` gives it: (name, value, filename) in order, the
    file part's name being the file name the index checks."""
    fields: dict[str, list[str | bytes]] = {}
    filename = None
    for name, value, part_filename in form:
        fields.setdefault(name, []).append(value)
        if name == "content":
            filename = part_filename
    return problems(fields, filename=filename)


def problems(fields: Mapping[str, Sequence[str | bytes]], *, filename: str | None = None) -> list[str]:
    """Every reason the index would give for refusing this form (and file name, if given)."""
    text = {name: [v for v in values if isinstance(v, str)] for name, values in fields.items() if name != "content"}
    found: list[str] = []
    found += _form_problems(text)
    found += _metadata_problems(text)
    found += _description_problems(text)
    if filename is not None:
        found += _filename_problems(text, filename)
    return found


def _one(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name) or []
    return values[0] if values else None


def _form_problems(fields: Mapping[str, list[str]]) -> list[str]:
    found = [f"'{name}' was sent {len(values)} times; it takes one value" for name, values in fields.items()
             if name in SINGLE and len(values) > 1]
    if _one(fields, ":action") != "file_upload":
        found.append("':action' must be 'file_upload'")
    if _one(fields, "protocol_version") != "1":
        found.append("'protocol_version' must be '1'")
    filetype = _one(fields, "filetype")
    if filetype not in FILETYPES:
        found.append(f"Invalid value for filetype: {filetype!r}; only sdist and bdist_wheel are accepted")
    if filetype == "sdist" and _one(fields, "pyversion") != "source":
        found.append("Use 'source' as the pyversion of an sdist")
    if filetype == "bdist_wheel" and not _one(fields, "pyversion"):
        found.append("Python version is required for binary distribution uploads.")
    name = _one(fields, "name") or ""
    # A project named like a standard library module would shadow it for whoever installs it.
    if canonicalize_name(name) in STDLIB_NAMES:
        found.append(f"The name {name!r} isn't allowed.")
    version = _one(fields, "version") or ""
    if version != version.strip():
        found.append("The version cannot have leading or trailing whitespace.")
    if not any(_one(fields, name) for name in HEX_DIGESTS):
        found.append("Include at least one message digest")
    for name, length in HEX_DIGESTS.items():
        value = _one(fields, name)
        if value is not None and not re.fullmatch(rf"[0-9a-f]{{{length}}}", value):
            found.append(f"'{name}' must be {length} lowercase hexadecimal characters")
    return found


def _raw_metadata(fields: Mapping[str, list[str]]) -> dict:
    raw: dict = {}
    for name in TEXT:
        value = _one(fields, name)
        if value is not None:
            raw[name] = value
    for name, key in LISTS.items():
        if fields.get(name):
            raw[key] = list(fields[name])
    keywords = _one(fields, "keywords")
    if keywords is not None:
        raw["keywords"] = [word.strip() for word in keywords.split(",")]
    urls = fields.get("project_urls") or []
    if urls:
        raw["project_urls"] = dict(_label_and_url(entry) for entry in urls)
    return raw


def _label_and_url(entry: str) -> tuple[str, str]:
    label, _, url = entry.partition(",")
    return label.strip(), url.strip()


def _metadata_problems(fields: Mapping[str, list[str]]) -> list[str]:
    raw = _raw_metadata(fields)
    found: list[str] = []
    version = raw.get("metadata_version")
    if version not in METADATA_VERSIONS:
        found.append(f"{version!r} is not a valid metadata version")
        return found
    # packaging applies the core metadata specification: names, PEP 440 versions, one-line
    # summaries, fields used before the metadata version that introduced them.
    try:
        Metadata.from_raw(raw)
    except ExceptionGroup as group:
        found += [str(error) for error in group.exceptions]
    try:
        if raw.get("version") and Version(raw["version"]).local:
            found.append(f"The use of local versions in {raw['version']!r} is not allowed.")
    except InvalidVersion:
        pass  # packaging has said so
    summary = raw.get("summary") or ""
    if len(summary) > SUMMARY_LIMIT:
        found.append(f"'summary' field must be {SUMMARY_LIMIT} characters or less.")
    for name in ("author_email", "maintainer_email"):
        found += _email_problems(raw.get(name))
    for classifier in raw.get("classifiers", []):
        if classifier not in trove_classifiers.classifiers and classifier not in trove_classifiers.deprecated_classifiers:
            found.append(f"{classifier!r} is not a valid classifier.")
        elif classifier in trove_classifiers.deprecated_classifiers:
            found.append(f"The classifier {classifier!r} has been deprecated.")
    for name in ("home_page", "download_url"):
        if name in raw and not _is_url(raw[name]):
            found.append(f"{raw[name]!r} is not a valid url.")
    for label, url in raw.get("project_urls", {}).items():
        if not label or len(label) > PROJECT_URL_LABEL_LIMIT:
            found.append(f"project URL label {label!r} must be 1 to {PROJECT_URL_LABEL_LIMIT} characters.")
        if not _is_url(url):
            found.append(f"{url!r} is not a valid url")
    return found


def _email_problems(value: str | None) -> list[str]:
    """Addresses in RFC 822 form ("Name <a@b>", or lists of them), each one deliverable in form."""
    if not value:
        return []
    found = []
    for _name, address in email.utils.getaddresses([value]):
        if not address:
            continue
        try:
            email_validator.validate_email(address, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            found.append(f"{address!r} is not a valid email address: {exc}")
    return found


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(ch.isspace() for ch in value)


def _content_type(value: str | None) -> tuple[str, dict[str, str]] | None:
    """(type, parameters) of a description content type, None if it is not one the index knows."""
    kind, *params = [part.strip() for part in (value or "text/x-rst").split(";")]
    parameters = {}
    for param in params:
        key, _, val = param.partition("=")
        parameters[key.strip().lower()] = val.strip()
    if kind.lower() not in CONTENT_TYPES or parameters.get("charset", "UTF-8").upper() != "UTF-8":
        return None
    if kind.lower() == "text/markdown" and parameters.get("variant", "GFM") not in MARKDOWN_VARIANTS:
        return None
    return kind.lower(), parameters


def _render(description: str, kind: str, parameters: dict[str, str]) -> str | None:
    if kind == "text/markdown":
        if not readme_renderer.markdown.variants:
            # The Markdown renderer is readme-renderer's [md] extra; the legacy clients never
            # declare Markdown (distutils has no content type), so without it this is not checked.
            return ""
        return readme_renderer.markdown.render(description, variant=parameters.get("variant", "GFM"))
    if kind == "text/plain":
        return readme_renderer.txt.render(description)
    return readme_renderer.rst.render(description, stream=io.StringIO())


def _description_problems(fields: Mapping[str, list[str]]) -> list[str]:
    """The index renders the description, as reStructuredText when no content type is given, and
    refuses one that does not render: the page would show garbage."""
    description = _one(fields, "description")
    declared = _one(fields, "description_content_type")
    content_type = _content_type(declared)
    if content_type is None:
        return [f"Invalid description content type: {declared!r}"]
    if not description:
        return []
    if _render(description, *content_type) is not None:
        return []
    if declared:
        return [f"The description failed to render for '{content_type[0]}'. {DESCRIPTION_HELP}"]
    return [f"The description failed to render in the default format of reStructuredText. {DESCRIPTION_HELP}"]


def _filename_problems(fields: Mapping[str, list[str]], filename: str) -> list[str]:
    """The file name must be the normalised one for the project and version it carries."""
    name, version = _one(fields, "name") or "", _one(fields, "version") or ""
    try:
        if filename.endswith(".whl"):
            parsed_name, parsed_version, _build, _tags = parse_wheel_filename(filename)
        else:
            parsed_name, parsed_version = parse_sdist_filename(filename)
            if not filename.endswith(".tar.gz") or filename != _normalised_sdist(parsed_name, parsed_version):
                return [f"Filename {filename!r} is invalid, should be {_normalised_sdist(parsed_name, parsed_version)!r}."]
    except (InvalidSdistFilename, InvalidWheelFilename, InvalidVersion) as exc:
        return [f"Invalid distribution file name {filename!r}: {exc}"]
    try:
        same = parsed_version == Version(version)
    except InvalidVersion:
        same = False
    if parsed_name != re.sub(r"[-_.]+", "-", name).lower() or not same:
        return [f"The file name {filename!r} does not match the project {name!r} {version!r}."]
    return []


def _normalised_sdist(name: str, version: Version) -> str:
    return f"{name.replace('-', '_')}-{version}.tar.gz"

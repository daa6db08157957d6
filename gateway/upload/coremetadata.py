"""Core metadata text (PKG-INFO, METADATA) decoded into the values its author wrote.

Pure functions, no archive reading. Three things stand between the file and the author's text:

- the encoding: core metadata is UTF-8, but Python 2's distutils wrote byte strings as they were,
  so a setup.py saved in Latin-1 gave a Latin-1 PKG-INFO. Latin-1 decodes any bytes, so it is the
  fallback, and the caller is told it was used;
- the folding: a multi-line field (Description, License) is written as a header whose
  continuation lines start with 8 spaces (distutils, setuptools) or 7 spaces and `|` (the form
  the core metadata specification gives). The email parser keeps those prefixes; the index
  would store them, so a reST description fails to render and Markdown becomes a block quote;
- since metadata 2.1 the Description may be the message body instead, which is the author's text
  as it is and must not be touched.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from packaging.metadata import parse_email

UTF8 = "utf-8"
LATIN1 = "latin-1"
# Fields whose line breaks are the author's; every other folded value is one line.
MULTILINE_FIELDS = ("description", "license")
_PREFIXES = (" " * 8, " " * 7 + "|")
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]*")

# The value types of packaging's raw metadata: text, a list of texts, or a mapping (project URLs).
MetadataValue = str | list[str] | dict[str, str]


@dataclass(frozen=True)
class DecodedMetadata:
    raw: dict[str, MetadataValue]  # packaging.metadata's raw dict, multi-line fields unfolded
    encoding: str  # UTF8, or LATIN1 when the bytes were not UTF-8


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a byte-order mark dropped) when the bytes are UTF-8, else Latin-1."""
    try:
        return data.decode("utf-8-sig"), UTF8
    except UnicodeDecodeError:
        return data.decode(LATIN1), LATIN1


def unfold_multiline(value: str) -> str:
    """A multi-line header value as its author wrote it: each continuation line loses its
    8-space or 7-spaces-and-`|` prefix. A line holding only spaces is an empty line (editors
    strip trailing blanks). If some line carries neither prefix, the tool that wrote the file
    folded another way: the continuation lines lose only their common indentation."""
    first, *rest = value.split("\n")
    if not rest:
        return value
    unfolded = []
    for line in rest:
        prefix = next((p for p in _PREFIXES if line.startswith(p)), None)
        if prefix is not None:
            unfolded.append(line[len(prefix):])
        elif not line.strip():
            unfolded.append("")
        else:
            return "\n".join([first, textwrap.dedent("\n".join(rest))])
    return "\n".join([first, *unfolded])


def unfold_line(value: str) -> str:
    """A folded one-line header value joined back into one line."""
    return _FOLD.sub(" ", value).strip()


def _header_block(text: str) -> str:
    end = text.find("\n\n")
    return text if end < 0 else text[: end + 1]


def _has_header(headers: str, name: str) -> bool:
    return re.search(rf"^{re.escape(name)}[ \t]*:", headers, re.M | re.I) is not None


def parse_metadata(data: bytes) -> DecodedMetadata:
    """The metadata file's fields in packaging's raw form, with the author's text restored."""
    text, encoding = decode_text(data)
    # A PKG-INFO written in text mode on Windows has CRLF line ends; the values have LF.
    text = text.replace("\r\n", "\n")
    parsed, _unparsed = parse_email(text)
    headers = _header_block(text)
    raw: dict[str, MetadataValue] = {}
    for key, value in parsed.items():
        if not isinstance(value, str):
            assert isinstance(value, (list, dict)), f"{key}: {type(value).__name__}"
            raw[key] = value
        # A Description in the message body (metadata 2.1+) is not folded.
        elif key in MULTILINE_FIELDS and _has_header(headers, key):
            raw[key] = unfold_multiline(value)
        elif key not in MULTILINE_FIELDS and "\n" in value:
            raw[key] = unfold_line(value)
        else:
            raw[key] = value
    return DecodedMetadata(raw, encoding)

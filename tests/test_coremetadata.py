"""Decoding PKG-INFO/METADATA text into the values its author wrote (pure)."""

from __future__ import annotations

import os

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.upload.coremetadata import LATIN1, UTF8, decode_text, parse_metadata, unfold_multiline

README = "Démo\n====\n\nA paragraph.\n\n    indented code\n\n* item\n"


def _escaped(text: str, prefix: str = " " * 8) -> str:
    """The text as distutils folds a header value: every line after the first gets the prefix."""
    return ("\n" + prefix).join(text.split("\n"))


def _pkg_info(description: str, *, extra: str = "") -> bytes:
    return (f"Metadata-Version: 1.1\nName: demo\nVersion: 1.0\nDescription: {description}\n"
            f"Author: Old Timer\n{extra}").encode("utf-8")


def test_eight_space_continuations_give_back_the_authors_text():
    """A description folded with 8-space continuation lines decodes to the exact original text."""
    decoded = parse_metadata(_pkg_info(_escaped(README)))
    assert decoded.raw["description"] == README
    assert decoded.raw["author"] == "Old Timer"


def test_seven_spaces_and_bar_continuations_give_back_the_authors_text():
    """The specification's form, 7 spaces and `|`, decodes to the original text too."""
    decoded = parse_metadata(_pkg_info(_escaped(README, " " * 7 + "|")))
    assert decoded.raw["description"] == README


def test_a_continuation_line_of_only_a_few_spaces_is_an_empty_line():
    """A blank line whose 8 spaces an editor trimmed to fewer is still an empty line of the text."""
    folded = "Title\n        =====\n \n        Body"
    assert parse_metadata(_pkg_info(folded)).raw["description"] == "Title\n=====\n\nBody"


def test_other_folding_loses_only_the_common_indentation():
    """Continuation lines folded with another indentation keep their relative indentation."""
    assert unfold_multiline("Title\n  =====\n\n  text\n      code") == "Title\n=====\n\ntext\n    code"


def test_description_in_the_message_body_is_left_as_written():
    """Since metadata 2.1 the body is the description, verbatim: its indentation is the author's."""
    body = "# Title\n\n        eight spaces of code\n"
    data = f"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n{body}".encode()
    assert parse_metadata(data).raw["description"] == body


def test_license_is_multi_line_too():
    """A folded License keeps its line breaks without the prefixes."""
    license_text = "Line one\n  Line two"
    data = _pkg_info("x", extra=f"License: {_escaped(license_text)}\n")
    assert parse_metadata(data).raw["license"] == license_text


def test_a_folded_one_line_field_is_joined_into_one_line():
    """A summary folded over two lines is one line, as the index requires of it."""
    data = _pkg_info("x", extra="Summary: first half\n        second half\n")
    assert parse_metadata(data).raw["summary"] == "first half second half"


def test_crlf_line_ends_are_read_as_lf():
    """A PKG-INFO written with CRLF line ends decodes to the same text as with LF."""
    data = _pkg_info(_escaped(README)).replace(b"\n", b"\r\n")
    assert parse_metadata(data).raw["description"] == README


def test_utf8_metadata_is_read_as_utf8():
    """UTF-8 bytes (a byte-order mark dropped) are UTF-8."""
    assert decode_text("José".encode("utf-8")) == ("José", UTF8)
    assert decode_text(b"\xef\xbb\xbfJos\xc3\xa9") == ("José", UTF8)


def test_latin1_metadata_falls_back_and_says_so():
    """A PKG-INFO that Python 2 wrote in Latin-1 gives the author's name and reports Latin-1."""
    data = "Metadata-Version: 1.0\nName: demo\nVersion: 1.0\nAuthor: José Gonçalves\n".encode("latin-1")
    decoded = parse_metadata(data)
    assert decoded.raw["author"] == "José Gonçalves"
    assert decoded.encoding == LATIN1


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None)
@given(st.text(st.sampled_from(list("abXY é|:=-*` \t\n") + ["ç", "日"]), min_size=1, max_size=80))
def test_any_text_folded_by_distutils_decodes_to_itself(text):
    """Whatever the author wrote (tabs, trailing blanks, `|`, colons) survives folding and decoding,
    except leading blanks on its first line, which the header format itself drops."""
    assume(not text[0].isspace())
    assert parse_metadata(_pkg_info(_escaped(text))).raw["description"] == text

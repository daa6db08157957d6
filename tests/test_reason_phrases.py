"""Refusal reasons reach the user whole and readable: decoding, shortening, encoding (pure)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import one_line
from gateway.upload.exchange import REASON_LATIN1, REASON_UTF8, Reply, reason_charset
from gateway.upload.upstream import decode_reason_phrase, explain

CLASSIFIER = "'Natural Language :: Français' is not a valid classifier"
HELP_URL = "https://packaging.python.org/specifications/core-metadata"
# The shape of the index's longest refusals: what failed, the detail, and a help URL at the end.
LONG_REASON = (
    "Invalid value for classifiers. Error: " + CLASSIFIER + ". "
    + "Classifiers must be chosen from the list of trove classifiers the index publishes; a project "
    + "that needs a new classifier asks for it to be added before using it. Uploads that carry an "
    + "unknown classifier are refused as a whole, every file of it. "
    + "See " + HELP_URL + " for more information."
)


def _as_received(text: str, encoding: str) -> str:
    """The reason phrase as the HTTP client hands it over: the bytes decoded as ISO-8859-1."""
    return text.encode(encoding).decode("latin-1")


def test_the_long_reason_is_longer_than_the_limit():
    """The example the shortening tests use is the 424-character refusal that was cut mid-URL."""
    assert len(LONG_REASON) == 424


def test_latin1_reason_phrase_is_decoded_as_latin1():
    """The index's ISO-8859-1 reason phrase reads as it was written."""
    assert decode_reason_phrase(_as_received(CLASSIFIER, "latin-1")) == CLASSIFIER


def test_utf8_reason_phrase_is_decoded_as_utf8():
    """A server that sends UTF-8 is read as UTF-8, because those bytes really are UTF-8."""
    assert decode_reason_phrase(_as_received(CLASSIFIER, "utf-8")) == CLASSIFIER


def test_explain_keeps_a_non_ascii_reason_whole():
    """The refusal the user sees is the index's sentence, accent included."""
    assert explain(400, _as_received(CLASSIFIER, "latin-1"), "<html></html>") == CLASSIFIER


def test_a_long_reason_is_cut_at_a_sentence_and_keeps_its_url():
    """A reason over the limit loses whole sentences from its middle, never its URL."""
    short = explain(400, _as_received(LONG_REASON, "latin-1"), "")
    assert len(short) <= 400
    assert short.startswith("Invalid value for classifiers. Error: " + CLASSIFIER + ".")
    assert short.endswith("See " + HELP_URL + " for more information.")
    assert " ... See " in short


def test_a_long_first_sentence_is_cut_between_words_before_the_url():
    """With no sentence short enough, the first is cut between words and the URL sentence stays."""
    text = "word " * 120 + "end. See " + HELP_URL + " for help."
    short = one_line(text, 200)
    assert len(short) <= 200
    assert short.startswith("word word") and "... See " + HELP_URL + " for help." in short


def test_a_single_sentence_with_a_url_keeps_the_url():
    """One long sentence ending in a URL keeps its start and the whole URL."""
    short = one_line("word " * 100 + "see " + HELP_URL + ".", 120)
    assert len(short) <= 120 and short.endswith("... " + HELP_URL)


def test_text_without_urls_is_cut_between_words():
    """Without a URL, a long line is cut between words and marked."""
    short = one_line("alpha " * 100, 50)
    assert len(short) <= 50 and short.endswith("alpha...")


@pytest.mark.parametrize("user_agent, charset", [
    ("Python-urllib/3.11", REASON_LATIN1), ("Python-urllib/3.6", REASON_LATIN1), ("twine/6.0", REASON_LATIN1),
    ("Python-urllib/2.7", REASON_UTF8), (None, REASON_UTF8),
])
def test_reason_charset_follows_the_client(user_agent, charset):
    """Python 3 clients decode the status line as ISO-8859-1; Python 2 ones print its bytes."""
    assert reason_charset(user_agent) == charset


def test_reply_status_line_in_latin1_for_python3():
    """The status line Python 3's http.client reads back as the exact reason."""
    raw = Reply(400, CLASSIFIER, reason_charset=REASON_LATIN1).to_bytes()
    status_line = raw.split(b"\r\n", 1)[0]
    assert status_line.decode("latin-1") == f"HTTP/1.0 400 {CLASSIFIER}"


def test_reply_status_line_in_utf8_for_python2():
    """The status line whose bytes a UTF-8 terminal shows as the exact reason."""
    raw = Reply(400, CLASSIFIER, reason_charset=REASON_UTF8).to_bytes()
    assert raw.split(b"\r\n", 1)[0].decode("utf-8") == f"HTTP/1.0 400 {CLASSIFIER}"


def test_reply_reason_beyond_latin1_gets_plain_stand_ins():
    """Characters Latin-1 lacks become their base letter or a plain mark, never raw UTF-8 bytes."""
    raw = Reply(400, "Łódź \u2014 \u201cquoted\u201d \u2026 \u65e5", reason_charset=REASON_LATIN1).to_bytes()
    assert raw.split(b"\r\n", 1)[0].decode("latin-1") == 'HTTP/1.0 400 ?ódz - "quoted" ... ?'


_WORDS = st.text(st.sampled_from(list("abcdé .!?,;")), max_size=60)
_URLS = st.builds(lambda path: f"https://example.org/{path}", st.text(st.sampled_from(list("abc/-_")), max_size=30))


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None)
@given(st.lists(st.one_of(_WORDS, _URLS), max_size=30), st.integers(min_value=60, max_value=400))
def test_shortened_reasons_fit_and_keep_their_urls(pieces, limit):
    """Any reason fits the limit, and when its URLs fit in half of it every one arrives whole."""
    text = " ".join(pieces)
    short = one_line(text, limit)
    assert len(short) <= limit
    urls = [piece for piece in pieces if piece.startswith("https://")]
    if sum(len(url) + 1 for url in urls) <= limit // 2:
        for url in urls:
            assert url in short

"""The stand-in for the index's validation refuses what the index refuses, and only that (pure)."""

from __future__ import annotations

import pytest

from tests import warehouse_rules

README = "Demo\n====\n\nSome *text*, and a `link <https://example.org>`_.\n"


def _form(**changes: list[str]) -> dict[str, list[str]]:
    form = {
        ":action": ["file_upload"], "protocol_version": ["1"], "metadata_version": ["1.1"], "name": ["demo"],
        "version": ["1.0"], "summary": ["A demo"], "description": [README], "home_page": ["https://example.org/demo"],
        "author": ["José Gonçalves"], "author_email": ["jose@example.org"], "license": ["MIT"],
        "classifiers": ["License :: OSI Approved :: MIT License", "Natural Language :: French"],
        "filetype": ["sdist"], "pyversion": ["source"], "sha256_digest": ["0" * 64],
    }
    form.update(changes)
    return form


def test_a_clean_form_passes():
    """A form the index takes gives no problem, with its file name."""
    assert warehouse_rules.problems(_form(), filename="demo-1.0.tar.gz") == []


def test_a_folded_rest_description_is_refused():
    """The reST description with distutils' 8-space prefixes left in fails to render, as on the index."""
    mangled = "\n        ".join(README.split("\n"))
    assert warehouse_rules.problems(_form(description=[mangled])) == [
        "The description failed to render in the default format of reStructuredText. "
        "See https://pypi.org/help/#description-content-type for more information."]


@pytest.mark.parametrize("changes, expected", [
    ({"summary": ["x" * 513]}, "'summary' field must be 512 characters or less."),
    ({"summary": ["two\nlines"]}, "summary"),
    ({"classifiers": ["Natural Language :: Français"]}, "'Natural Language :: Français' is not a valid classifier."),
    ({"classifiers": ["License :: OSI Approved :: Intel Open Source License"]}, "has been deprecated"),
    ({"home_page": ["None"]}, "'None' is not a valid url."),
    ({"download_url": ["ftp://example.org/demo.tar.gz"]}, "is not a valid url"),
    ({"version": ["1.0-final-beta"]}, "1.0-final-beta"),
    ({"version": ["1.0+local"]}, "local versions"),
    ({"author_email": ["not an address"]}, "is not a valid email address"),
    ({"metadata_version": ["1.0"]}, "classifier introduced in metadata version 1.1"),
    ({"metadata_version": ["3.0"]}, "'3.0' is not a valid metadata version"),
    ({"filetype": ["bdist_egg"]}, "only sdist and bdist_wheel"),
    ({"blake2_256_digest": ["f" * 128]}, "'blake2_256_digest' must be 64"),
    ({"name": ["asyncio"]}, "The name 'asyncio' isn't allowed."),
    ({"name": ["not a name!"]}, "'not a name!' is invalid for 'name'"),
    ({"version": [" 1.0"]}, "leading or trailing whitespace"),
    ({"filetype": ["bdist_wheel"], "pyversion": [""]}, "Python version is required"),
    ({"metadata_version": ["1.2"], "requires_python": [">=3.x"]}, "'>=3.x' is invalid for 'requires-python'"),
    ({"description_content_type": ["text/html"]}, "Invalid description content type"),
])
def test_what_the_index_refuses_is_refused(changes, expected):
    """Each rule of the index's this stand-in knows gives a problem that names it."""
    found = warehouse_rules.problems(_form(**changes))
    assert [p for p in found if expected in p], found


def test_the_sdist_file_name_must_be_the_normalised_one():
    """The legacy `Demo-1.0.tar.gz` is refused with the name the index wants."""
    assert warehouse_rules.problems(_form(), filename="Demo-1.0.tar.gz") == [
        "Filename 'Demo-1.0.tar.gz' is invalid, should be 'demo-1.0.tar.gz'."]

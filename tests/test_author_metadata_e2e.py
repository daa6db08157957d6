"""End to end: real distutils sdists (Python 3.11, and Python 2.7 where the machine has it) go
through the real OpenSSH client and the gateway, and every field the upstream receives is what the
author wrote in setup.py; what the index refuses reaches the user whole and readable, and the
kinds of file it no longer takes are refused before anything is forwarded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests import warehouse_rules
from tests.helpers import recorded_events

PYTHONS = ["3.11", "2.7"]  # 2.7: the real pypissh 1.4 (the `python2` fixture skips where none exists)

AUTHOR = {"author": "Old Timer", "author_email": "old.timer@example.org"}
REST_README = (
    "Démo du paquet\n"
    "==============\n"
    "\n"
    "Un paquet *ancien*, téléversé à l'ancienne : ça marche.\n"
    "\n"
    "Usage\n"
    "-----\n"
    "\n"
    "::\n"
    "\n"
    "    >>> import demo\n"
    "    >>> demo.hello()\n"
    "\n"
    "* premier point\n"
    "* second point, avec un `lien <https://example.org/démo>`_\n"
)
MARKDOWN_README = (
    "# Demo package\n"
    "\n"
    "A package with a *Markdown* README, uploaded the old way.\n"
    "\n"
    "- one item\n"
    "- another item\n"
)
PLAIN_README = "A plain text description.\nIt has two lines, and no markup at all.\n"
CLASSIFIERS = [
    "Development Status :: 6 - Mature",
    "Intended Audience :: Developers",
    "License :: OSI Approved :: MIT License",
    "Natural Language :: French",
    "Programming Language :: Python :: 2.7",
    "Topic :: Software Development :: Libraries",
]
INVALID_CLASSIFIER = "Natural Language :: Français"
CLASSIFIER_REASON = f"'{INVALID_CLASSIFIER}' is not a valid classifier."
HELP_URL = "https://packaging.python.org/specifications/core-metadata"
# The shape of the index's longest refusals (424 characters): what failed, detail, a help URL last.
LONG_REASON = (
    f"Invalid value for classifiers. Error: {CLASSIFIER_REASON} "
    "Classifiers must be chosen from the list of trove classifiers the index publishes; a project "
    "that needs a new classifier asks for it to be added before using it. Uploads that carry an "
    "unknown classifier are refused as a whole, every file of it. "
    f"See {HELP_URL} for more information."
)


@pytest.fixture
def legacy_upload(request, ssh_client, legacy_home):
    """`setup.py <commands> upload` (default: sdist) with that Python's distutils: the stdlib one
    through testbed/pypissh.py on 3.11, the real pypissh on 2.7; (exit status, all output)."""
    def _upload(python: str, project: Path, *commands: str) -> tuple[int, str]:
        args = [*(commands or ("sdist",)), "upload"]
        if python == "3.11":
            result = ssh_client().legacy(project, *args, home=legacy_home)
            return result.returncode, result.stdout + result.stderr
        done = request.getfixturevalue("real_pypissh")(project, *args, text=False)
        # Python 2 writes the reason phrase's bytes as they came: decoding them strictly shows they
        # are what a UTF-8 terminal displays correctly.
        return done.returncode, (done.stdout + done.stderr).decode("utf-8")

    return _upload


def _only_dist(project: Path) -> Path:
    (dist,) = list((project / "dist").glob("*.tar.gz"))
    return dist


def _forwarded(upstream) -> dict[str, list]:
    (record,) = [r for r in upstream.recordings() if r.method == "POST"]
    form = record.form()
    assert form[-1][0] == "content"
    assert warehouse_rules.form_problems(form) == []  # the file name included
    fields: dict[str, list] = {}
    for name, value, _filename in form:
        fields.setdefault(name, []).append(value)
    return fields


def _as_written(name: str, setup: dict, content: bytes) -> dict[str, list]:
    """The form the index should receive for these setup() arguments: the author's values and
    nothing else, beside the file and its digests."""
    return {
        ":action": ["file_upload"], "protocol_version": ["1"], "metadata_version": ["1.1"],
        "name": [name], "version": ["1.0"], "summary": [setup["description"]],
        "description": [setup["long_description"]], "home_page": [setup["url"]],
        "author": [setup["author"]], "author_email": [setup["author_email"]], "license": [setup["license"]],
        "classifiers": list(setup["classifiers"]), "filetype": ["sdist"], "pyversion": ["source"],
        "md5_digest": [hashlib.md5(content).hexdigest()], "sha256_digest": [hashlib.sha256(content).hexdigest()],
        "blake2_256_digest": [hashlib.blake2b(content, digest_size=32).hexdigest()], "content": [content],
    }


def _setup_args(long_description: str, **changes) -> dict:
    args = {"description": "A demonstration package uploaded the old way", "long_description": long_description,
            "url": "https://example.org/demo", "license": "MIT", "classifiers": CLASSIFIERS, **AUTHOR}
    args.update(changes)
    return args


@pytest.fixture
def upload_as_written(alice, gateway, legacy_upload, legacy_project, upstream, project_name):
    """Build and upload a project with these setup() arguments; returns (forwarded, expected,
    the event's notes)."""

    def _run(python: str, setup: dict, *, source_encoding: str = "utf-8"):
        project = legacy_project(source_encoding=source_encoding, **setup)
        upstream.clear_recordings()
        status, output = legacy_upload(python, project)
        assert status == 0, output
        assert "Server response (200)" in output
        content = _only_dist(project).read_bytes()
        (event,) = recorded_events(gateway.registry, account_name="alice")
        assert event.outcome == "forwarded"
        return _forwarded(upstream), _as_written(project_name, setup, content), event.error

    return _run


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("readme", [REST_README, MARKDOWN_README, PLAIN_README], ids=["rest", "markdown", "plain"])
def test_description_arrives_as_written(upload_as_written, python, readme):
    """A reST README with a title and accented text, a Markdown one (the index would show indented
    lines as a quote) and plain text: every field as written, unindented, and it renders."""
    forwarded, expected, notes = upload_as_written(python, _setup_args(readme))
    assert forwarded == expected
    assert warehouse_rules.problems(forwarded) == []
    assert notes is None  # the client's form agreed with PKG-INFO


@pytest.mark.parametrize("python", PYTHONS)
def test_latin1_author_arrives_as_written(upload_as_written, python):
    """A setup.py saved in Latin-1 (so Python 2 writes a Latin-1 PKG-INFO): the name arrives
    intact, and the event says when PKG-INFO had to be read as Latin-1."""
    setup = _setup_args("Écrit par José Gonçalves.\n", author="José Gonçalves", author_email="jose@example.org")
    forwarded, expected, notes = upload_as_written(python, setup, source_encoding="latin-1")
    assert forwarded == expected
    assert warehouse_rules.problems(forwarded) == []
    if python == "2.7":
        assert notes == "the file's metadata is not UTF-8; read as latin-1 and forwarded as UTF-8"
    else:
        assert notes is None  # Python 3 wrote PKG-INFO in UTF-8


def test_the_validator_refuses_the_folded_description(upload_as_written):
    """The stand-in for the index refuses the reST description as it used to arrive, folded."""
    forwarded, _, _ = upload_as_written("3.11", _setup_args(REST_README))
    mangled = dict(forwarded, description=["\n        ".join(REST_README.split("\n"))])
    assert [p for p in warehouse_rules.problems(mangled) if "failed to render" in p]


# -- refusals ---------------------------------------------------------------------------------------

@pytest.fixture
def refused_upload(alice, legacy_upload, legacy_project, upstream):
    """Upload while the upstream answers 400 with `reason`, as the index does; returns the output."""

    def _run(python: str, reason: str, **setup) -> str:
        project = legacy_project(**setup)
        upstream.set_fault(400, reason, count=1)
        status, output = legacy_upload(python, project)
        assert status != 0
        return output

    return _run


@pytest.mark.parametrize("python", PYTHONS)
def test_non_ascii_reason_is_printed_whole(refused_upload, python):
    """The index's ISO-8859-1 reason reaches both lines the user reads: the client's and ours."""
    output = refused_upload(python, CLASSIFIER_REASON, classifiers=[*CLASSIFIERS, INVALID_CLASSIFIER])
    assert f"Upload failed (400): {CLASSIFIER_REASON}" in output
    assert f"pypissh-gateway: not published (400): {CLASSIFIER_REASON}" in output


@pytest.mark.parametrize("python", PYTHONS)
def test_long_reason_keeps_its_url(refused_upload, python):
    """A 424-character reason is shortened between sentences; its help URL arrives whole."""
    assert len(LONG_REASON) == 424
    output = refused_upload(python, LONG_REASON)
    (client_line,) = [line for line in output.splitlines() if line.startswith("Upload failed (400): ")]
    (gateway_line,) = [line for line in output.splitlines() if line.startswith("pypissh-gateway: not published")]
    for line in (client_line, gateway_line):
        reason = line.split("(400): ", 1)[1]
        assert len(reason) <= 400
        assert reason.startswith(f"Invalid value for classifiers. Error: {CLASSIFIER_REASON}")
        assert reason.endswith(f"See {HELP_URL} for more information.")


# -- kinds of file the index no longer takes -------------------------------------------------------

@pytest.mark.parametrize("python, commands, refusal", [
    ("3.11", ("bdist_dumb",), "no longer accepts bdist_dumb archives"),
    ("3.11", ("bdist_dumb", "--format=zip"), "no longer accepts bdist_dumb archives"),
    ("3.11", ("sdist", "--formats=zip"), "accepts source distributions only as .tar.gz"),
    ("2.7", ("bdist_dumb",), "no longer accepts bdist_dumb archives"),
    ("2.7", ("bdist_wininst",), "no longer accepts Windows installers (.exe)"),
])
def test_kinds_the_index_refuses_are_refused_before_forwarding(alice, legacy_upload, legacy_project, upstream,
                                                              python, commands, refusal):
    """A built file the index would refuse is refused by the gateway, saying what to build instead."""
    upstream.clear_recordings()
    status, output = legacy_upload(python, legacy_project(), *commands)
    assert status != 0
    (client_line,) = [line for line in output.splitlines() if line.startswith("Upload failed (400): ")]
    (gateway_line,) = [line for line in output.splitlines() if line.startswith("pypissh-gateway: not published")]
    for line in (client_line, gateway_line):
        assert refusal in line and "PKG-INFO" not in line
        assert "wheels (.whl)" in line and "`python -m build`" in line
    assert [r for r in upstream.recordings() if r.method == "POST"] == []


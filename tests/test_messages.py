"""Every sentence a user of the SSH path reads comes from gateway/messages.py (or the templates):
the modules that refuse requests, logins and channels build no refusal text of their own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway import phrases

GATEWAY = Path(phrases.__file__).parent
# The modules on the SSH path whose refusals users (or, for the settings, operators) read.
SPEAKING_MODULES = sorted(
    [*(GATEWAY / "upload").glob("*.py"), *(GATEWAY / "ssh").glob("*.py"), GATEWAY / "settings.py",
     GATEWAY / "tokens.py", GATEWAY / "checks.py", GATEWAY / "lifecycle" / "notices.py"])
# Exceptions whose message a user reads (the reason phrase, an SSH disconnect or channel refusal),
# and the findings `check` prints.
USER_FACING = {"fail", "ok", "GatewayError", "BadRequest", "RequestTooLarge", "ClientTimeout", "ClientAborted", "ArtifactError",
               "CredentialError", "PolicyRefusal", "UpstreamFailure", "ConfigError", "PermissionDenied",
               "ChannelOpenError", "ServiceNotAvailable", "Reply"}
# Calls that write text to the user's session or connection.
USER_CHANNELS = {"write_stderr", "disconnect"}


def _literal_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)))


def _inline_sentences(source: str) -> list[str]:
    """`line name(...)` for each user-facing call in `source` that passes a sentence literally."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if (name in USER_FACING or name in USER_CHANNELS) and any(
                _literal_text(arg) and _words(arg) > 2 for arg in node.args):
            found.append(f"{node.lineno} {name}(...)")
    return found


def _words(node: ast.AST) -> int:
    if isinstance(node, ast.JoinedStr):
        return sum(len(part.value.split()) for part in node.values if isinstance(part, ast.Constant))
    return len(str(node.value).split())


@pytest.mark.parametrize("path", SPEAKING_MODULES, ids=lambda p: str(p.relative_to(GATEWAY)))
def test_refusals_come_from_messages(path):
    """No user-facing exception, reply or session write in this module spells out its own sentence."""
    assert _inline_sentences(path.read_text()) == []


def test_nothing_published_has_one_spelling():
    """"nothing was published" is spelled once, as messages.NOTHING_PUBLISHED: no other module or
    template writes it."""
    sources = [*GATEWAY.rglob("*.py"), *(GATEWAY / "templates").rglob("*.j2")]
    spelled = {p: p.read_text().count("nothing was published") for p in sources}
    assert {p: n for p, n in spelled.items() if n} == {GATEWAY / "messages.py": 1}
    assert phrases.NOTHING_PUBLISHED == "nothing was published"


def test_the_check_finds_an_inline_refusal():
    """The check is not vacuous: a BadRequest raised with its own sentence is reported."""
    source = 'from gateway.errors import BadRequest\n\ndef f():\n    raise BadRequest(f"the thing {1} is wrong; fix it")\n'
    assert _inline_sentences(source) == ["4 BadRequest(...)"]

"""Every sentence a user of the SSH path reads comes from a text function (or the templates): the
modules that refuse requests, logins and channels spell out no refusal text inline, and each text
function returns whole sentences, not pieces glued together elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway import phrases

GATEWAY = Path(phrases.__file__).parent
ROOT = GATEWAY.parent
# The modules that hold texts: the text modules, and the modules whose texts follow a `# -- ` section
# header at their end (the reason phrases beside the code that raises them).
TEXT_MODULES = sorted(
    [GATEWAY / "phrases.py", GATEWAY / "setting_texts.py", GATEWAY / "check_texts.py", GATEWAY / "cli_texts.py",
     GATEWAY / "ssh" / "user_texts.py", GATEWAY / "upload" / "refusals.py", ROOT / "migrate" / "admin_texts.py"])
TEXTS_AT_THE_END = sorted(
    [GATEWAY / "errors.py", GATEWAY / "tokens.py", GATEWAY / "runtime" / "hangup.py", GATEWAY / "ops" / "logformat.py",
     GATEWAY / "registry" / "accounts.py", GATEWAY / "registry" / "keys.py", GATEWAY / "registry" / "schedule.py",
     GATEWAY / "limits.py",
     *(GATEWAY / "upload" / f"{name}.py" for name in ("framing", "multipart", "artifact", "form", "index"))])
# The modules on the SSH path whose refusals users (or, for the settings, operators) read.
SPEAKING_MODULES = sorted(
    [*(GATEWAY / "upload").glob("*.py"), *(GATEWAY / "ssh").glob("*.py"), GATEWAY / "settings.py",
     GATEWAY / "tokens.py", GATEWAY / "checks.py", GATEWAY / "lifecycle" / "notices.py",
     GATEWAY / "registry" / "accounts.py", GATEWAY / "registry" / "keys.py", GATEWAY / "registry" / "schedule.py",
     GATEWAY / "limits.py", GATEWAY / "keycache.py"])
# Exceptions whose message a user reads (the reason phrase, an SSH disconnect or channel refusal),
# and the findings `check` prints.
USER_FACING = {"fail", "ok", "GatewayError", "BadRequest", "RequestTooLarge", "ClientTimeout", "ClientAborted", "ArtifactError",
               "CredentialError", "PolicyRefusal", "UpstreamFailure", "AdminInputError", "IndexUnavailable", "ConfigError", "PermissionDenied",
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
def test_refusals_come_from_text_functions(path):
    """No user-facing exception, reply or session write in this module spells out its own sentence."""
    assert _inline_sentences(path.read_text()) == []


def test_nothing_published_has_one_spelling():
    """"nothing was published" is spelled once, as phrases.NOTHING_PUBLISHED: no other module or
    template writes it."""
    sources = [*GATEWAY.rglob("*.py"), *(GATEWAY / "templates").rglob("*.j2")]
    spelled = {p: p.read_text().count("nothing was published") for p in sources}
    assert {p: n for p, n in spelled.items() if n} == {GATEWAY / "phrases.py": 1}
    assert phrases.NOTHING_PUBLISHED == "nothing was published"


def test_the_check_finds_an_inline_refusal():
    """The check is not vacuous: a BadRequest raised with its own sentence is reported."""
    source = 'from gateway.errors import BadRequest\n\ndef f():\n    raise BadRequest(f"the thing {1} is wrong; fix it")\n'
    assert _inline_sentences(source) == ["4 BadRequest(...)"]


def _text_functions(path: Path) -> list[ast.FunctionDef]:
    """The module's text functions: all of a text module's, the ones after the text section of another."""
    source = path.read_text()
    start = 0
    if path not in TEXT_MODULES:
        start = next(i for i, line in enumerate(source.splitlines(), 1) if line.startswith("# -- "))
    return [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.lineno > start]


def _fragments(function: ast.FunctionDef) -> list[str]:
    """`line name` for each piece of a sentence the function keeps in a variable to glue into the
    sentence it returns (e.g. `what = f"'{project}' is" if project else "projects are"`): each
    branch should return its own whole sentence instead, so each can be read, and translated, whole."""
    found = []
    for node in ast.walk(function):
        # A list holds whole lines (help, whoami, the banner): each is read as a line of its own.
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None \
                and not isinstance(node.value, ast.List):
            pieces = [n for n in ast.walk(node.value) if _literal_text(n) and not isinstance(n.value if isinstance(
                n, ast.Constant) else None, bytes)]
            # A lone constant ("?" or a unit) is a value, not a piece of a sentence.
            if any(isinstance(n, ast.JoinedStr) or _words(n) > 1 for n in pieces if not _in_fstring(n, node.value)):
                found.append(f"{node.lineno} {function.name}")
    return found


def _in_fstring(node: ast.AST, within: ast.AST) -> bool:
    return any(isinstance(parent, ast.JoinedStr) and node in parent.values for parent in ast.walk(within))


@pytest.mark.parametrize("path", TEXT_MODULES + TEXTS_AT_THE_END, ids=lambda p: str(p.relative_to(ROOT)))
def test_texts_are_whole_sentences(path):
    """No text function builds a piece of a sentence in a variable and glues it into another."""
    assert [f for function in _text_functions(path) for f in _fragments(function)] == []


def test_the_check_finds_a_fragment():
    """The fragment check is not vacuous: a sentence glued from a piece built aside is reported."""
    source = ('def note(project):\n    what = f"\'{project}\' is" if project else "projects are"\n'
              '    return f"OK: nothing to register, {what} created by the first upload"\n')
    (function,) = ast.parse(source).body
    assert _fragments(function) == ["2 note"]

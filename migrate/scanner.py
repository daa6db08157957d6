"""Finding legacy upload usage in a project's files: pure functions over (path, text).

What counts as legacy, and what replaces it:
- `setup.py ... upload` / `register` / `upload_docs` (in Makefiles, tox.ini, shell scripts, CI
  configs, docs, Python release scripts): `python -m build` and `twine upload dist/*`;
- `import pypissh` and `pypissh` / `python -m pypissh` invocations, `pip install pypissh`;
- `.pypirc` / setup.cfg repositories pointing at an SSH host (`ssh://`, `submit@host`);
- setup.cfg sections configuring the removed commands (`[upload]`, `[register]`, `[upload_docs]`).

Command lines are read word by word after `setup.py`, through distutils command names and
options only, so prose such as "build with setup.py sdist, then twine upload" does not match.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

# Commands of distutils, setuptools and wheel, and common plug-ins: a run of these (and options)
# after `setup.py` is one invocation.
KNOWN_COMMANDS = frozenset({
    "alias", "bdist", "bdist_dumb", "bdist_egg", "bdist_msi", "bdist_rpm", "bdist_wheel",
    "bdist_wininst", "build", "build_clib", "build_ext", "build_py", "build_scripts",
    "build_sphinx", "check", "clean", "develop", "dist_info", "easy_install", "egg_info", "install",
    "install_data", "install_egg_info", "install_headers", "install_lib", "install_scripts",
    "nosetests", "pytest", "register", "rotate", "saveopts", "sdist", "setopt", "test", "upload",
    "upload_docs", "upload_sphinx"
})
UPLOAD_COMMANDS = {"upload": "upload", "register": "register", "upload_docs": "upload_docs",
                   "upload_sphinx": "upload_docs"}
# Options of those commands that take a separate value (`-r pypi`, `--repository pypi`).
VALUE_OPTIONS = frozenset({
    "-r", "--repository", "-i", "--identity", "-d", "--dist-dir", "--formats", "-b", "--bdist-dir",
    "-p", "--plat-name", "--python-tag", "--owner", "--group", "--upload-dir", "--command-packages",
    "-t", "--template", "-m", "--manifest"
})
SHELL_SEPARATORS = {";", "&&", "||", "|", "&", ")", "#"}

_WORD = re.compile(r"[^\s\"'`,()\[\]]+")
_SETUP_PY = re.compile(r"(^|[/\\$(){}])setup\.py$")
_IMPORT = re.compile(r"^\s*(import\s+pypissh\b|from\s+pypissh(\.\w+)*\s+import\b)")
# `pypissh` where a command starts: line start (after a prompt or list marker), after a shell
# separator or backtick, after `run:`/`script:` in CI files, or as `python -m pypissh`; the next
# word (if any) must look like its arguments, so prose such as "pypissh is retired" is left alone.
_INVOKE = re.compile(r"(?:^\s*(?:[-*>$]\s+)?|[;&|(`]\s*|\b(?:run|script|command|commands)\s*:\s*(?:-\s*)?"
                     r"|\bpython[0-9.]*\s+-m\s+)(?:sudo\s+)?(?:\S*/)?pypissh(?:\s+(?P<next>[^\s`]+)|\s*(?:`|$))")
_PYPISSH_AS_SETUP = re.compile(r"(?:\bpython[0-9.]*\s+-m\s+)?(?<![\w.-])(?:\S*/)?pypissh(?:\s+\S*setup\.py)?(?=\s|$)")
_PIP_INSTALL = re.compile(r"\bpip[0-9.]*\s+install\b[^\n#;&|]*?(?<![\w.-])pypissh(?![\w.-])")
_REQUIREMENT = re.compile(r"^\s*pypissh\s*(?:[<>=!~;\[]|$)", re.IGNORECASE)
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*(?:[#;].*)?$")
_KEY_VALUE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*[=:]\s*(.*?)\s*$")
_SSH_TARGET = re.compile(r"^(ssh|sftp|scp|git\+ssh)://|^[\w.-]+@[\w.-]+(:|$)|\bsubmit@")

BUILD = "python -m build"
UPLOAD = "twine upload dist/*"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str  # setup_upload | setup_register | setup_upload_docs | pypissh | pypirc_ssh | setup_cfg_section
    found: str  # the line, stripped and shortened
    replacement: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.found}\n    replace with: {self.replacement}"


# -- which files ---------------------------------------------------------------------------------
SCANNED_NAMES = frozenset({
    "makefile", "gnumakefile", "tox.ini", "setup.cfg", "setup.py", ".pypirc", "pypirc", "jenkinsfile",
    "dockerfile", "justfile", "noxfile.py", "fabfile.py", "requirements.txt", "pyproject.toml",
    ".travis.yml", ".gitlab-ci.yml", "appveyor.yml", ".appveyor.yml", "azure-pipelines.yml",
    "bitbucket-pipelines.yml", ".cirrus.yml", ".drone.yml",
})
SCANNED_SUFFIXES = frozenset({
    ".mk", ".sh", ".bash", ".zsh", ".ksh", ".bat", ".cmd", ".ps1", ".py", ".yml", ".yaml", ".cfg",
    ".ini", ".toml", ".rst", ".md", ".markdown", ".txt", ".in", ".pypirc",
})
SKIPPED_DIRS = frozenset({
    ".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "env", "node_modules", "__pycache__",
    ".eggs", "build", "dist", "site-packages", ".mypy_cache", ".pytest_cache",
})


def is_scanned(path: str) -> bool:
    name = PurePosixPath(path).name.lower()
    if name in SCANNED_NAMES or name.startswith(("makefile", "readme", "changelog", "release")):
        return True
    return PurePosixPath(name).suffix in SCANNED_SUFFIXES


def skip_dir(name: str) -> bool:
    return name in SKIPPED_DIRS or name.endswith(".egg-info")


# -- one file ------------------------------------------------------------------------------------
def scan_text(path: str, text: str) -> list[Finding]:
    """Every legacy use in one file, in line order."""
    lines = text.splitlines()
    findings = _command_findings(path, lines)
    name = PurePosixPath(path).name.lower()
    if name in (".pypirc", "pypirc", "setup.cfg") or name.endswith(".pypirc"):
        findings += _ini_findings(path, lines, setup_cfg=name == "setup.cfg")
    return sorted(findings, key=lambda f: (f.line, f.kind))


def _short(line: str, limit: int = 120) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """Join backslash continuations (Makefiles, shell), keeping the number of the first line."""
    joined: list[tuple[int, str]] = []
    start = 0
    parts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not parts:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(parts)))
        parts = []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


def _hash_comments(path: str) -> bool:
    """Files where a line starting with '#' is a comment (in markdown it is a heading)."""
    name = PurePosixPath(path).name.lower()
    suffix = PurePosixPath(name).suffix
    return suffix not in (".md", ".markdown", ".rst", ".txt") or name.startswith("requirements")


def _command_findings(path: str, lines: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    comments = _hash_comments(path)
    requirements = PurePosixPath(path).name.lower().startswith("requirements")
    for number, line in _logical_lines(lines):
        if comments and line.lstrip().startswith("#"):
            continue
        found = _short(line)
        if _IMPORT.search(line):
            findings.append(Finding(path, number, "pypissh", found,
                                    f"remove the pypissh import; build with `{BUILD}` and upload with `{UPLOAD}`"))
        elif _invokes_pypissh(line):
            # pypissh runs setup.py commands: one finding for the line, replaced by what they become.
            commands = setup_py_commands(_PYPISSH_AS_SETUP.sub(" setup.py", line))
            findings.append(Finding(path, number, "pypissh", found, _pypissh_replacement(commands)))
            continue
        elif _PIP_INSTALL.search(line) or (requirements and _REQUIREMENT.match(line)):
            findings.append(Finding(path, number, "pypissh", found, "install build and twine instead of pypissh"))
        for kind, args in setup_py_commands(line):
            findings.append(Finding(path, number, kind, found, replacement_for(kind, args)))
    return findings


def _pypissh_replacement(commands: list[tuple[str, list[str]]]) -> str:
    by_kind = dict(commands)
    for kind in ("setup_upload", "setup_upload_docs", "setup_register"):
        if kind in by_kind:
            return replacement_for(kind, by_kind[kind])
    return f"{BUILD} && {UPLOAD}"


def _invokes_pypissh(line: str) -> bool:
    for match in _INVOKE.finditer(line):
        following = match.group("next")
        if (following is None or following.startswith("-") or following in KNOWN_COMMANDS
                or _SETUP_PY.search(following)):
            return True
    return False


def setup_py_commands(line: str) -> list[tuple[str, list[str]]]:
    """The legacy commands each `setup.py` invocation on the line runs: [(kind, all its words)]."""
    words = _WORD.findall(line)
    found: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(words):
        if not _SETUP_PY.search(words[index]):
            index += 1
            continue
        args: list[str] = []
        index += 1
        while index < len(words):
            word = words[index]
            ends = word.endswith(";")
            word = word.rstrip(";")
            if word in SHELL_SEPARATORS or not word:
                break
            if word.startswith("-"):
                args.append(word)
                if word in VALUE_OPTIONS and index + 1 < len(words):
                    args.append(words[index + 1])
                    index += 1
            elif word in KNOWN_COMMANDS:
                args.append(word)
            else:
                break
            index += 1
            if ends:
                break
        kinds = []
        for word in args:
            kind = UPLOAD_COMMANDS.get(word)
            if kind and f"setup_{kind}" not in kinds:
                kinds.append(f"setup_{kind}")
        found += [(kind, args) for kind in kinds]
    return found


def replacement_for(kind: str, args: list[str]) -> str:
    if kind == "setup_register":
        return "nothing: the first `twine upload` creates the project (drop `register`)"
    if kind == "setup_upload_docs":
        return "host documentation on Read the Docs or GitHub Pages; the index no longer takes documentation uploads"
    build = BUILD
    if "sdist" in args and not any(a.startswith("bdist") for a in args):
        build += " --sdist"
    elif "bdist_wheel" in args and "sdist" not in args:
        build += " --wheel"
    upload = UPLOAD
    for flag in ("-r", "--repository"):
        if flag in args[:-1]:
            upload = f"twine upload -r {args[args.index(flag) + 1]} dist/*"
    return f"{build} && {upload}"


def _ini_findings(path: str, lines: list[str], *, setup_cfg: bool) -> list[Finding]:
    findings: list[Finding] = []
    section = ""
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith(("#", ";")):
            continue
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip()
            if setup_cfg and section in ("upload", "register", "upload_docs"):
                findings.append(Finding(path, number, "setup_cfg_section", _short(line),
                                        f"remove the [{section}] section: twine reads ~/.pypirc or TWINE_* variables"))
            continue
        pair = _KEY_VALUE.match(line)
        if not pair or pair.group(1).lower() not in ("repository", "repository_url", "repository-url"):
            continue
        if _SSH_TARGET.search(pair.group(2)):
            findings.append(Finding(path, number, "pypirc_ssh", _short(line),
                                    "repository = https://upload.pypi.org/legacy/ with username = __token__ "
                                    "and an API token as password"))
    return findings

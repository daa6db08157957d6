"""`pypissh-migrate scan PATH`: list legacy upload usage in a project tree (usable as a CI check)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from migrate.scanner import Finding, is_scanned, scan_text, skip_dir

# Larger files are data, not scripts or docs.
MAX_FILE_BYTES = 2 * 1024 * 1024


def project_files(root: Path) -> list[tuple[str, str]]:
    """(path relative to root, text) of every file worth scanning, in a stable order."""
    if root.is_file():
        text = _read(root)
        return [(root.name, text)] if text is not None else []
    found: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not skip_dir(d))
        for name in sorted(files):
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if not is_scanned(relative):
                continue
            text = _read(path)
            if text is not None:
                found.append((relative, text))
    return found


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


@click.command("scan")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for tools.")
def scan(path: Path, fmt: str) -> None:
    """Find legacy upload usage under PATH and say what replaces each one.

    Looks at Makefiles, tox.ini, shell scripts, CI configs, docs, Python scripts, setup.cfg and
    .pypirc for `setup.py upload|register|upload_docs`, pypissh, and repositories on an SSH
    host. Prints FILE:LINE, what was found and its replacement. Exits 1 when something is
    found (so a CI job fails until the project has moved to twine), 0 when the tree is clean.
    """
    findings: list[Finding] = []
    for relative, text in project_files(path):
        findings += scan_text(relative, text)
    if fmt == "json":
        click.echo(json.dumps({"path": str(path), "findings": [f.as_dict() for f in findings]}, indent=2))
    elif findings:
        for finding in findings:
            click.echo(str(finding))
        click.echo(f"{len(findings)} legacy upload use(s) found; the twine guide: "
                   "https://packaging.python.org/en/latest/tutorials/packaging-projects/#uploading-the-distribution-archives")
    else:
        click.echo(f"no legacy upload usage found under {path}")
    sys.exit(1 if findings else 0)

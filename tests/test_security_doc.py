"""SECURITY.md's promises name the tests that show them; a renamed or deleted test must not leave a
promise pointing at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"tests/(test_\w+)\.py(?:::(\w+))?")


def test_every_test_security_md_names_exists():
    """Each `tests/<module>.py[::<test>]` in SECURITY.md is a module of the suite holding that test."""
    found = REFERENCE.findall((ROOT / "SECURITY.md").read_text())
    assert len(found) >= 10
    for module, name in found:
        path = ROOT / "tests" / f"{module}.py"
        assert path.is_file(), f"SECURITY.md names tests/{module}.py, which does not exist"
        if name:
            defined = {node.name for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.FunctionDef)}
            assert name in defined, f"SECURITY.md names {module}::{name}, which does not exist"

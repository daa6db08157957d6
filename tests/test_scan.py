"""`pypissh-migrate scan`: legacy upload usage in a project tree, and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from migrate.cli import cli
from migrate.scanner import scan_text, setup_py_commands

FIXTURE = Path(__file__).parent / "data" / "scan_project"

# Every legacy use the fixture project holds: (file, line, kind). Its other lines are decoys.
EXPECTED = {
    (".gitlab-ci.yml", 4, "setup_upload"),
    (".pypirc", 11, "pypirc_ssh"),
    (".travis.yml", 5, "setup_register"),
    (".travis.yml", 6, "setup_upload"),
    ("Makefile", 6, "setup_upload"),
    ("Makefile", 9, "setup_register"),
    ("Makefile", 12, "setup_upload_docs"),
    ("Makefile", 20, "setup_upload"),
    ("README.md", 7, "pypissh"),
    ("requirements-release.txt", 3, "pypissh"),
    ("setup.cfg", 4, "setup_cfg_section"),
    ("setup.cfg", 5, "pypirc_ssh"),
    ("tox.ini", 7, "setup_upload"),
    (".github/workflows/release.yml", 10, "pypissh"),
    (".github/workflows/release.yml", 11, "setup_upload"),
    ("docs/releasing.rst", 6, "setup_upload"),
    ("scripts/old_release.py", 4, "pypissh"),
    ("scripts/old_release.py", 6, "setup_upload"),
    ("scripts/release.sh", 4, "pypissh"),
    ("scripts/release.sh", 5, "pypissh"),
}


def _scan(*args: str):
    return CliRunner().invoke(cli, ["scan", *args])


def test_scan_finds_each_legacy_use_and_nothing_else():
    """Every planted legacy invocation is found, with its file and line; no decoy is."""
    result = _scan(str(FIXTURE), "--format", "json")
    assert result.exit_code == 1, result.output
    findings = json.loads(result.output)["findings"]
    assert {(f["path"], f["line"], f["kind"]) for f in findings} == EXPECTED
    assert len(findings) == len(EXPECTED)


def test_scan_text_output_names_file_line_and_replacement():
    """The text report shows FILE:LINE, the line found and what replaces it."""
    result = _scan(str(FIXTURE))
    assert result.exit_code == 1
    assert "tox.ini:7: python setup.py sdist upload\n    replace with: python -m build --sdist && twine upload dist/*" in result.output
    assert "Makefile:6:" in result.output and "twine upload -r pypi dist/*" in result.output
    assert "scripts/release.sh:5: python -m pypissh register" in result.output
    assert f"{len(EXPECTED)} legacy upload use(s) found" in result.output


def test_scan_clean_tree_exits_zero(tmp_path):
    """A project already on twine passes: exit status 0."""
    (tmp_path / "Makefile").write_text("release:\n\tpython -m build\n\ttwine upload dist/*\n")
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup(name='x')\n")
    result = _scan(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "no legacy upload usage" in result.output


def test_scan_skips_tool_and_build_folders(tmp_path):
    """Virtualenvs, tox environments and build output are not the project's own files."""
    project = tmp_path / "p"
    shutil.copytree(FIXTURE, project)
    for folder in (".tox/py311/lib", ".venv/bin", "build/lib", "node_modules/x"):
        (project / folder).mkdir(parents=True)
        (project / folder / "upload.sh").write_text("python setup.py sdist upload\n")
    result = _scan(str(project), "--format", "json")
    assert len(json.loads(result.output)["findings"]) == len(EXPECTED)


def test_setup_py_words_stop_at_prose_and_shell_separators():
    """Only distutils commands and options after setup.py count; prose and `&& twine upload` end the run."""
    assert setup_py_commands("python setup.py sdist && twine upload dist/*") == []
    assert setup_py_commands("build with setup.py sdist and then twine upload") == []
    assert setup_py_commands("python setup.py sdist bdist_wheel") == []
    assert [k for k, _ in setup_py_commands("python setup.py -q sdist upload -r pypi; echo done")] == ["setup_upload"]
    assert [k for k, _ in setup_py_commands("./setup.py register sdist upload")] == ["setup_register", "setup_upload"]


def test_commented_out_lines_are_not_findings_except_in_docs():
    """A '#' line in a script is a comment; in markdown it is a heading and is read."""
    assert scan_text("Makefile", "# python setup.py sdist upload\n") == []
    assert [f.kind for f in scan_text("NOTES.md", "# python setup.py sdist upload\n")] == ["setup_upload"]

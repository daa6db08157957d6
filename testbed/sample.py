"""Sample legacy projects and a way to run the legacy client on them.

    project = make_legacy_project(tmp_path / "demo")
    write_pypirc(home)                      # the classic ~/.pypirc with an old password
    result = run_legacy(project, ["sdist", "upload"], ssh_command="ssh -p 2222 ...", home=home)

A distutils quirk to know: for the `[pypi]` section, `upload`/`register` without `-r` always use
https://upload.pypi.org/legacy/, whatever `repository` the section names (distutils forces the
default URL for that section). So the legacy client talks to host `upload.pypi.org`, path
`/legacy/`; point it at a local server with PYPISSH_HOST (and PYPISSH_SSH for port and key).
The section's `repository` is only used with `-r <that same URL>`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from testbed import source_tree_environment
from testbed.legacyclients import python311

DEFAULT_REPOSITORY = "https://upload.pypi.org/legacy/"
DEFAULT_CLASSIFIERS = (
    "Development Status :: 5 - Production/Stable",
    "License :: OSI Approved :: MIT License",
    "Programming Language :: Python :: 3",
)


def module_name(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def make_legacy_project(
    dest: Path,
    name: str = "demo-pkg",
    version: str = "1.0",
    *,
    classifiers: Iterable[str] = DEFAULT_CLASSIFIERS,
    description: str = "A demonstration package uploaded the old way",
    long_description: str | None = None,
    author: str = "Old Timer",
    author_email: str = "old.timer@example.org",
    url: str = "https://example.org/demo-pkg",
    license: str = "MIT",
    py_modules: Sequence[str] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
    extra_setup_args: Mapping[str, object] | None = None,
    source_encoding: str = "utf-8",
) -> Path:
    """Write a distutils project (setup.py, one module, README.txt) into `dest`; returns `dest`.

    `extra_files` maps relative paths to contents (written as given; their modules are not added
    to py_modules automatically). `extra_setup_args` adds or overrides setup() keyword arguments.
    setup.py is saved in `source_encoding`, declared in its coding line: Python 3 reads its strings
    as text, while for Python 2 they are byte strings in that encoding, which its distutils writes
    into PKG-INFO and the upload form unchanged (a Latin-1 setup.py gave a Latin-1 PKG-INFO).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    module = module_name(name)
    modules = list(py_modules) if py_modules is not None else [module]
    setup_args: dict[str, object] = {
        "name": name,
        "version": version,
        "description": description,
        "author": author,
        "author_email": author_email,
        "url": url,
        "license": license,
        "classifiers": list(classifiers),
        "py_modules": modules,
    }
    if long_description is not None:
        setup_args["long_description"] = long_description
    if extra_setup_args:
        setup_args.update(extra_setup_args)
    arguments = "".join(f"    {key}={value!r},\n" for key, value in setup_args.items())
    setup_py = f"# -*- coding: {source_encoding} -*-\nfrom distutils.core import setup\n\nsetup(\n{arguments})\n"
    (dest / "setup.py").write_text(setup_py, source_encoding)
    for mod in modules:
        path = dest / (mod.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(
                f'"""{name} {version}."""\n\n\ndef hello():\n    return "hello from {mod}"\n',
                "utf-8",
            )
    (dest / "README.txt").write_text(
        textwrap.dedent(
            f"""\
            {name}
            {"=" * len(name)}

            {description}.
            """
        ),
        "utf-8",
    )
    for relative, content in (extra_files or {}).items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, "utf-8")
    return dest


def make_modern_project(dest: Path, name: str = "modern-pkg", version: str = "2.0") -> Path:
    """Write a minimal pyproject.toml project (setuptools backend) into `dest`; returns `dest`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    module = module_name(name)
    (dest / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            description = "A package built the modern way"
            readme = "README.txt"
            license = {{text = "MIT"}}
            classifiers = ["Programming Language :: Python :: 3"]

            [tool.setuptools]
            py-modules = ["{module}"]
            """
        ),
        "utf-8",
    )
    (dest / f"{module}.py").write_text(f'"""{name} {version}."""\n', "utf-8")
    (dest / "README.txt").write_text(f"{name}\n", "utf-8")
    return dest


def build_sdist(project_dir: Path, outdir: Path, *, python: str | None = None) -> Path:
    """Build an sdist with `python -m build --sdist --no-isolation` (offline: uses the current
    environment's setuptools); returns the path of the new archive."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    before = set(outdir.glob("*.tar.gz"))
    result = subprocess.run(
        [python or sys.executable, "-m", "build", "--sdist", "--no-isolation",
         "--outdir", str(outdir), str(project_dir)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"python -m build failed:\n{result.stdout}\n{result.stderr}")
    created = sorted(set(outdir.glob("*.tar.gz")) - before)
    if len(created) != 1:
        raise RuntimeError(f"expected one new sdist in {outdir}, found {created}")
    return created[0]


def write_pypirc(
    home: Path,
    repository_url: str = DEFAULT_REPOSITORY,
    username: str = "olduser",
    password: str = "old-password",
) -> Path:
    """Write `home/.pypirc` in the classic format; returns its path (see the module notes on
    how distutils treats `repository` in the `[pypi]` section)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / ".pypirc"
    path.write_text(
        textwrap.dedent(
            f"""\
            [distutils]
            index-servers =
                pypi

            [pypi]
            repository: {repository_url}
            username: {username}
            password: {password}
            """
        ),
        "utf-8",
    )
    path.chmod(0o600)
    return path


def legacy_environment(
    *,
    ssh_command: str,
    home: Path,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment run_legacy() uses (exposed for callers that start the client themselves)."""
    result = source_tree_environment()
    for name in ("http_proxy", "https_proxy", "all_proxy", "PYPISSH_HOST", "PYPISSH_USER"):
        result.pop(name, None)
        result.pop(name.upper(), None)
    result["HOME"] = str(home)
    result["SETUPTOOLS_USE_DISTUTILS"] = "stdlib"
    result["PYPISSH_SSH"] = ssh_command
    result["PYTHONDONTWRITEBYTECODE"] = "1"
    if env:
        result.update(env)
    return result


def run_legacy(
    project_dir: Path,
    args: Sequence[str],
    *,
    ssh_command: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    python: str | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m testbed.pypissh <args>` in `project_dir`, capturing stdout and stderr as
    text. HOME is `home` (so its .pypirc is used), SETUPTOOLS_USE_DISTUTILS=stdlib and
    PYPISSH_SSH=`ssh_command`; `env` adds or overrides variables (e.g. PYPISSH_HOST). `python`
    defaults to a Python 3.11 with distutils, never the gateway's interpreter, which may be a
    3.12 or 3.13 without it (testbed/legacyclients.py)."""
    return subprocess.run(
        [python or python311(), "-m", "testbed.pypissh", *args],
        cwd=str(project_dir),
        env=legacy_environment(ssh_command=ssh_command, home=home, env=env),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )

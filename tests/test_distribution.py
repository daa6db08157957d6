"""The distribution as an operator gets it.

The sdist is built from a copy of this source tree and holds the whole project; the wheel is built
from the unpacked sdist and holds the product only. The wheel is installed, without extras, into a
fresh virtualenv that never sees this source tree (its own interpreter, a clean PYTHONPATH, a
temporary working directory), and the quick start runs against its console scripts, ending with a
legacy upload through the real OpenSSH client to the testbed's TLS pypiserver. Only the test side
(the legacy client, the upstream) uses the testbed from this tree.

The virtualenv is made once per session; pip reaches the package index for the dependencies and
reuses its cache.
"""

from __future__ import annotations

import email.parser
import hashlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import trove_classifiers
from click.testing import CliRunner
from packaging.requirements import Requirement

import gateway
from testbed.knownhosts import known_hosts_lines
from gateway.cli import cli as gateway_cli
from migrate.cli import cli as migrate_cli
from testbed import SOURCE_ROOT, free_port
from testbed.sample import make_legacy_project, run_legacy, write_pypirc

DISTRIBUTION = "pypissh-gateway"
VERSION = gateway.__version__
REPOSITORY = "https://github.com/pypa/pypissh-gateway"
SSH = shutil.which("ssh")
# What a source tree holds besides the project: checkouts' and builds' by-products.
GENERATED = {".git", ".venv", "build", "dist", "var", "__pycache__", ".pytest_cache", ".hypothesis"}


def _generated(folder: str, names: list[str]) -> set[str]:
    found = {n for n in names if n in GENERATED or n.endswith((".egg-info", ".pyc"))}
    if Path(folder).name == "bench" and "out" in names:
        found.add("out")  # benchmark results of this machine
    return found


def _project_files(*folders: str) -> set[str]:
    """Every file of these folders of the source tree, as paths relative to its root."""
    found = set()
    for folder in folders:
        for path in (SOURCE_ROOT / folder).rglob("*"):
            relative = path.relative_to(SOURCE_ROOT)
            if relative.parts[:2] == ("bench", "out"):
                continue  # benchmark results of this machine, at any depth
            if path.is_file() and not _generated(str(path.parent), [*relative.parts]):
                found.add(relative.as_posix())
    return found


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would lead a Python to this source tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYPISSH_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", **extra)
    return env


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    unpacked: Path  # the sdist, unpacked

    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as archive:
            return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return set(archive.namelist())

    def metadata(self):
        with zipfile.ZipFile(self.wheel) as archive:
            text = archive.read(f"pypissh_gateway-{VERSION}.dist-info/METADATA").decode()
        return email.parser.Parser().parsestr(text)


def _build(kind: str, project: Path, out: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "build", kind, "--no-isolation", "--outdir", str(out), str(project)],
                          capture_output=True, text=True, cwd=out.parent, env=_clean_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """`python -m build --sdist` on a copy of the source tree, then `--wheel` from the unpacked sdist
    (both without isolation: this environment's setuptools, no download)."""
    work = tmp_path_factory.mktemp("dist")
    out = work / "out"
    shutil.copytree(SOURCE_ROOT, work / "source", ignore=_generated)
    _build("--sdist", work / "source", out)
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    unpacked = work / sdist.name.removesuffix(".tar.gz")
    _build("--wheel", unpacked, out)
    (wheel,) = out.glob("*.whl")
    return Built(sdist, wheel, unpacked)


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *argv: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, input=stdin, cwd=self.work, timeout=120,
                              env=env or _clean_environment())


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory) -> Installed:
    """A fresh virtualenv with the wheel installed as the README says (`pip install` with the
    sdist's constraints), no extras, run from an empty directory."""
    base = tmp_path_factory.mktemp("installed")
    venv, work = base / "venv", base / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, cwd=work, env=_clean_environment())
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                           "-c", str(built.unpacked / "requirements" / "constraints.txt"), str(built.wheel)],
                          capture_output=True, text=True, cwd=work, env=_clean_environment(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return Installed(venv, work)


# -- what the archives hold ------------------------------------------------------------------------
def test_sdist_holds_the_whole_project(built):
    """The sdist has the documents, LICENSE with the Apache-2.0 text, deploy/, tests/ with their
    data, testbed/ and bench/ (without bench/out), the dependency lock and constraints, besides
    the product."""
    names = built.sdist_names()
    for document in ("LICENSE", "README.md", "SECURITY.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in"):
        assert document in names
    expected = _project_files("deploy", "tests", "testbed", "bench", "gateway", "migrate", "requirements")
    assert {"requirements/constraints.txt", "requirements/dev.lock"} <= expected
    assert expected - names == set()
    assert any(name.startswith("tests/data/legacy/") for name in names)
    assert not any(name.startswith("bench/out/") for name in names)
    licence = (built.unpacked / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence and "9. Accepting Warranty or Additional Liability" in licence


def test_wheel_holds_the_product_only(built):
    """The wheel has gateway and migrate with every template, the schema migrations and py.typed,
    plus the licence; no testbed, tests or bench."""
    names = built.wheel_names()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"gateway", "migrate", f"pypissh_gateway-{VERSION}.dist-info"}
    product = {name for name in _project_files("gateway", "migrate")}
    assert product - names == set()
    assert {"gateway/py.typed", "migrate/py.typed", "gateway/registry/migrations/script.py.mako",
            "migrate/report/templates/chart.svg.j2"} <= names
    assert f"pypissh_gateway-{VERSION}.dist-info/licenses/LICENSE" in names


def test_metadata_names_version_licence_classifiers_urls_and_extras(built):
    """The wheel's metadata: this version, the Apache-2.0 licence expression, only valid and current
    trove classifiers, the project URLs, and a core without the plotting and PostgreSQL libraries."""
    meta = built.metadata()
    assert meta["Name"] == DISTRIBUTION and meta["Version"] == VERSION
    assert meta["License-Expression"] == "Apache-2.0"
    classifiers = meta.get_all("Classifier")
    assert classifiers and set(classifiers) <= trove_classifiers.classifiers
    assert not set(classifiers) & set(trove_classifiers.deprecated_classifiers)
    urls = dict(line.split(", ", 1) for line in meta.get_all("Project-URL"))
    assert set(urls) == {"Homepage", "Source", "Issues", "Changelog"}
    assert all(url.startswith(REPOSITORY) for url in urls.values())
    assert set(meta.get_all("Provides-Extra")) == {"report", "postgres", "test"}

    requirements = [Requirement(line) for line in meta.get_all("Requires-Dist")]
    core = {r.name.lower() for r in requirements if r.marker is None}
    assert {"asyncssh", "sqlalchemy", "mousebender", "email-validator"} <= core
    assert not core & {"matplotlib", "numpy", "pillow", "psycopg"}

    def extra(name: str) -> dict[str, set[str]]:
        return {r.name.lower(): r.extras for r in requirements if r.marker and r.marker.evaluate({"extra": name})}

    assert "matplotlib" in extra("report") and "psycopg" in extra("postgres")
    assert {"pytest", "pypiserver"} <= set(extra("test"))
    assert extra("test")[DISTRIBUTION] == {"report", "postgres"}  # the suite draws the PNG and uses PostgreSQL


def test_suite_runs_from_the_unpacked_sdist(built):
    """The unit tests, the report's, the scanner's (tests/data) and the deploy-file checks pass in
    the unpacked sdist, importing gateway and testbed from there."""
    env = _clean_environment()
    where = subprocess.run([sys.executable, "-c", "import gateway, testbed; print(gateway.__file__); "
                            "print(testbed.__file__)"], capture_output=True, text=True, cwd=built.unpacked, env=env)
    assert [Path(p).is_relative_to(built.unpacked) for p in where.stdout.split()] == [True, True], where.stderr
    modules = ["tests/test_multipart.py", "tests/test_artifact_and_form.py", "tests/test_settings_and_tokens.py",
               "tests/test_schedule.py", "tests/test_report.py", "tests/test_scan.py", "tests/test_deploy_files.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules],
                          capture_output=True, text=True, cwd=built.unpacked, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]


# -- the installed commands ------------------------------------------------------------------------
def test_installed_commands_run_the_venv_copy_not_this_tree(installed):
    """In the virtualenv, gateway and migrate come from its site-packages and testbed is absent."""
    found = installed.run(installed.bin("python"), "-c", "import gateway, migrate; print(gateway.__file__); "
                          "print(migrate.__file__)")
    assert found.returncode == 0, found.stderr
    assert all(Path(p).is_relative_to(installed.venv) for p in found.stdout.split())
    missing = installed.run(installed.bin("python"), "-c", "import testbed")
    assert missing.returncode == 1 and "No module named 'testbed'" in missing.stderr


def test_version_of_both_commands_is_the_distribution_version(installed):
    """`--version` of both installed commands, and of this tree's, prints the distribution's version."""
    recorded = installed.run(installed.bin("python"), "-c",
                             f"import importlib.metadata as m; print(m.version('{DISTRIBUTION}'))").stdout.strip()
    assert recorded == VERSION
    for command in ("pypissh-gateway", "pypissh-migrate"):
        shown = installed.run(installed.bin(command), "--version")
        assert shown.returncode == 0 and shown.stdout == f"{command}, version {VERSION}\n"
    for group, name in ((gateway_cli, "pypissh-gateway"), (migrate_cli, "pypissh-migrate")):
        assert CliRunner().invoke(group, ["--version"], prog_name=name).output == f"{name}, version {VERSION}\n"


def test_core_install_leaves_out_the_extras(installed):
    """Without extras there is no matplotlib (nor numpy) and no psycopg in the virtualenv, and
    reading the simple API brings no pydantic (12 MB with pypi-simple's other dependencies)."""
    for module in ("matplotlib", "numpy", "psycopg", "pydantic"):
        found = installed.run(installed.bin("python"), "-c", f"import {module}")
        assert found.returncode == 1 and f"No module named '{module}'" in found.stderr


def test_png_chart_without_matplotlib_names_the_report_extra(installed, tmp_path):
    """In the core-only virtualenv, `report --chart` exits 1 with one line naming [report] and
    writes nothing; the HTML report, with its SVG chart, works there."""
    database = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    created = installed.run(installed.bin("pypissh-gateway"), "--set", f"database_url={database}", "db", "upgrade")
    assert created.returncode == 0, created.stderr
    chart = tmp_path / "chart.png"
    refused = installed.run(installed.bin("pypissh-migrate"), "--set", f"database_url={database}", "report",
                            "--chart", str(chart))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "Error: the chart needs matplotlib: pip install 'pypissh-gateway[report]'\n"
    assert not chart.exists()
    page = tmp_path / "report.html"
    done = installed.run(installed.bin("pypissh-migrate"), "--set", f"database_url={database}", "report",
                         "--format", "html", "--output", str(page))
    assert done.returncode == 0, done.stderr
    assert "<svg " in page.read_text()


def test_postgres_url_without_psycopg_names_the_postgres_extra(installed):
    """In the core-only virtualenv, a postgresql:// database_url stops every command at once with one
    line naming [postgres], exit 1, and never echoes the URL's password."""
    url = "postgresql://pypissh:s3cret-password@127.0.0.1:5432/pypissh"
    for argv in (("pypissh-gateway", "db", "upgrade"), ("pypissh-migrate", "accounts", "list")):
        refused = installed.run(installed.bin(argv[0]), "--set", f"database_url={url}", *argv[1:])
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr == ("Error: a postgresql:// database_url needs psycopg: "
                                  "pip install 'pypissh-gateway[postgres]'\n")


def _wait_until_ready(proc: subprocess.Popen, health_port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", health_port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not become ready:\n{log.read_text()}")



@pytest.mark.skipif(SSH is None, reason="the OpenSSH client is not installed (./dev test installs it)")
def test_quick_start_with_the_installed_commands_carries_a_legacy_upload(installed, upstream, tmp_path):
    """keygen, db upgrade, accounts add, keys add, set-token and serve from the virtualenv, then
    `setup.py sdist upload` through the real ssh client lands the file intact upstream."""
    port, health_port = free_port(), free_port()
    env = _clean_environment(
        PYPISSH_HOME=str(tmp_path / "home"),
        PYPISSH_DATABASE_URL=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        PYPISSH_HOST_KEY_DIR=str(tmp_path / "hostkeys"),
        PYPISSH_SECRET_KEY_FILE=str(tmp_path / "secret.key"),
        PYPISSH_UPSTREAM_URL=upstream.url,
        PYPISSH_UPSTREAM_CA_BUNDLE=str(upstream.ca_file),
        PYPISSH_LISTEN=f"127.0.0.1:{port}",
        PYPISSH_HEALTH_LISTEN=f"127.0.0.1:{health_port}",
        PYPISSH_PUBLIC_HOST="127.0.0.1",
        PYPISSH_PUBLIC_PORT=str(port),
    )
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "olduser@laptop",
                    "-f", str(tmp_path / "id_ed25519")], check=True)
    steps = [
        ((installed.bin("pypissh-gateway"), "keygen"), "", "wrote "),
        ((installed.bin("pypissh-gateway"), "db", "upgrade"), "", "database at revision"),
        ((installed.bin("pypissh-migrate"), "accounts", "add", "olduser", "--email", "old@example.org"), "", "olduser"),
        ((installed.bin("pypissh-migrate"), "keys", "add", "olduser", str(tmp_path / "id_ed25519.pub")), "", "SHA256:"),
        ((installed.bin("pypissh-migrate"), "accounts", "set-token", "olduser"), upstream.token + "\n", "olduser"),
    ]
    for argv, stdin, expected in steps:
        done = installed.run(*argv, env=env, stdin=stdin)
        assert done.returncode == 0 and expected in done.stdout + done.stderr, (argv, done.stdout, done.stderr)
        assert upstream.token not in done.stdout + done.stderr

    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        serve = subprocess.Popen([installed.bin("pypissh-gateway"), "serve"], env=env, cwd=installed.work,
                                 stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(serve, health_port, log)
        project = make_legacy_project(tmp_path / "Installed-Quickstart", name="Installed-Quickstart", version="1.0")
        home = tmp_path / "home"
        write_pypirc(home, username="olduser", password="my-old-password")
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(known_hosts_lines(tmp_path / "hostkeys", port))
        ssh = (f"{SSH} -p {port} -i {tmp_path / 'id_ed25519'} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts} -o LogLevel=ERROR")
        result = run_legacy(project, ["sdist", "upload"], ssh_command=ssh, home=home,
                            env={"PYPISSH_HOST": "127.0.0.1"})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Server response (200)" in result.stdout
        (sdist,) = (project / "dist").glob("*.tar.gz")
        assert upstream.files().get("installed_quickstart-1.0.tar.gz") == hashlib.sha256(sdist.read_bytes()).hexdigest()
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0, log.read_text()

"""The real legacy client: pypissh 1.4 from the package index, on Python 2.7, through the real
OpenSSH client and the gateway, to a real pypiserver behind TLS.

pypissh dials `ssh -T -l submit ssh.pypi.python.org` itself; an `ssh` first on PATH reads a
configuration that sends that host to the gateway, as a user's ~/.ssh/config did
(testbed/legacyclients.py, the `real_pypissh` fixture). Everything else is what its users ran: `python2.7 setup.py register
sdist upload` with the classic ~/.pypirc.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from testbed.legacyclients import PYPISSH_REPOSITORY
from testbed.sample import make_legacy_project


@pytest.fixture
def project(tmp_path, project_name) -> Path:
    return make_legacy_project(tmp_path / "project", name=project_name, version="1.0")


def _published_name(project_name: str) -> str:
    return project_name.lower().replace("-", "_") + "-1.0.tar.gz"


def test_pypissh_is_active_in_its_user_site(python2, pypissh_site):
    """The installed .pth patches distutils at start-up: the default repository is pypissh's URL."""
    import subprocess

    probe = subprocess.run([python2, "-c", "from distutils.config import PyPIRCCommand as C; print(C.DEFAULT_REPOSITORY)"],
                           capture_output=True, text=True, env={"PYTHONUSERBASE": str(pypissh_site), "PATH": "/usr/bin:/bin"})
    assert probe.stdout.strip() == PYPISSH_REPOSITORY, probe.stderr


def test_register_sdist_upload_lands_byte_identical(alice, real_pypissh, project, upstream, project_name):
    """`setup.py register sdist upload` succeeds, and the upstream holds the very bytes of the sdist
    under the name the index wants."""
    result = real_pypissh(project, "register", "sdist", "upload")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Server response (200)") == 2, result.stdout
    (dist,) = (project / "dist").glob("*.tar.gz")
    assert dist.name == f"{project_name}-1.0.tar.gz"  # what Python 2.7's distutils writes
    assert upstream.files()[_published_name(project_name)] == hashlib.sha256(dist.read_bytes()).hexdigest()


def test_user_reads_the_notice(alice, real_pypissh, project, user_key):
    """The gateway's notice reaches the user's terminal: the account, the key and the guide."""
    result = real_pypissh(project, "sdist", "upload")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "account 'alice'" in result.stderr
    assert user_key.fingerprint in result.stderr
    assert "guide" in result.stderr


def test_reupload_is_refused_with_the_index_reason(alice, real_pypissh, project):
    """The same file again: the client prints the upstream's own reason phrase."""
    assert real_pypissh(project, "sdist", "upload").returncode == 0
    again = real_pypissh(project, "sdist", "upload")
    output = again.stdout + again.stderr
    assert "Upload failed (409)" in output, output
    assert "already exists" in output


def test_unregistered_key_is_refused_and_nothing_forwarded(alice, real_pypissh, project, user_keys, upstream):
    """A key the registry does not know cannot log in, and the upstream receives nothing."""
    upstream.clear_recordings()
    result = real_pypissh(project, "sdist", "upload", key=user_keys["bob"])
    assert result.returncode != 0
    assert "Permission denied (publickey)" in result.stderr
    assert upstream.recordings() == []

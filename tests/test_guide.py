"""The personal twine guide: `pypissh-migrate guide NAME` for admins and `ssh ... guide` for users."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from packaging.utils import canonicalize_name

from gateway.registry import UploadEvent
from migrate.cli import cli
from tests.helpers import register_account

UTC = dt.timezone.utc


def admin(settings, *args: str):
    return CliRunner().invoke(cli, ["--set", f"database_url={settings.database_url}",
                                    "--set", f"secret_key_file={settings.secret_key_file}",
                                    "--set", f"upstream_url={settings.upstream_url}",
                                    "--set", f"public_host={settings.public_host}", *args])


def _seen_upload(registry, account: str, project: str, when: dt.datetime, fingerprint: str) -> None:
    account_id = registry.accounts.get_account(account).id
    registry.events.record(UploadEvent(at=when, outcome="forwarded", account_id=account_id, account_name=account,
                                      key_fingerprint=fingerprint, project=project, action="file_upload"))


def test_guide_is_executable_and_the_same_over_ssh(gateway, alice, ssh_client, legacy_project, legacy_home, upstream,
                                                   project_name, tmp_path, user_key):
    """Following the guide literally (its ~/.pypirc, build, check, upload) publishes the release; SSH shows the same steps."""
    project = legacy_project(version="1.0")
    assert ssh_client().legacy(project, "sdist", "upload", home=legacy_home).returncode == 0

    result = admin(gateway.settings, "guide", "alice", "--format", "json")
    assert result.exit_code == 0, result.output
    guide = json.loads(result.output)
    assert [p["name"] for p in guide["projects"]] == [canonicalize_name(project_name)]
    assert guide["token_scope"] == "project" and guide["scoped_project"] == canonicalize_name(project_name)
    install, token, pypirc, build, ci = guide["steps"]
    assert install["commands"] == ["python -m pip install --upgrade build twine"]
    assert build["commands"] == ["python -m build", "twine check dist/*", "twine upload dist/*"]

    # Step 3: the ~/.pypirc exactly as given, the token in place of the placeholder.
    home = tmp_path / "twine-home"
    home.mkdir()
    (home / ".pypirc").write_text(pypirc["content"].replace(pypirc["placeholder"], upstream.token))
    commands = [*pypirc["commands"], *build["commands"]]
    # Step 4 on the project's next release, after the guide's distutils -> setuptools change.
    release = legacy_project(version="2.0")
    setup_py = release / "setup.py"
    setup_py.write_text(setup_py.read_text().replace("from distutils.core import setup", "from setuptools import setup"))
    # `python -m build` normally makes an isolated environment and downloads setuptools into it;
    # this machine may be offline, so the test lets it use the setuptools already installed here.
    commands[commands.index("python -m build")] = "python -m build --no-isolation"
    env = dict(os.environ, HOME=str(home), REQUESTS_CA_BUNDLE=str(upstream.ca_file),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for command in commands:
        run = subprocess.run(command, shell=True, cwd=release, env=env,
                             capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, f"{command}\n{run.stdout}\n{run.stderr}"
    built = sorted((release / "dist").iterdir())
    assert sorted(p.suffix for p in built) == [".gz", ".whl"]  # the sdist and the wheel, whatever their case
    arrived = upstream.files()
    for dist in built:
        assert arrived[dist.name] == hashlib.sha256(dist.read_bytes()).hexdigest()

    over_ssh = ssh_client().run("guide")
    assert over_ssh.returncode == 0, over_ssh.stderr
    text = over_ssh.stdout.decode()
    for command in [*install["commands"], *commands]:
        assert command.replace(" --no-isolation", "") in text
    for line in pypirc["content"].splitlines():
        assert line in text
    admin_text = admin(gateway.settings, "guide", "alice").output
    # Over SSH the guide also points out the key of the login; everything else is the same.
    login = f"You are logged in with key {user_key.fingerprint}.\n\n"
    assert text.replace(login, "").replace("; the key of this login", "") == admin_text


def test_guide_names_projects_keys_and_exact_schedule_dates(gateway, alice, user_key, ssh_client):
    """The guide lists the projects and keys seen on the SSH path and the notice, next brownout and sunset in UTC."""
    registry = gateway.registry
    _seen_upload(registry, "alice", "first-project", dt.datetime(2030, 3, 4, 5, 6, tzinfo=UTC), user_key.fingerprint)
    _seen_upload(registry, "alice", "second-project", dt.datetime(2030, 4, 5, 6, 7, tzinfo=UTC), user_key.fingerprint)
    registry.schedule.add_window("notice", dt.datetime(2030, 1, 1, tzinfo=UTC))
    registry.schedule.add_window("brownout", dt.datetime(2030, 6, 1, 14, tzinfo=UTC), dt.datetime(2030, 6, 1, 16, 30, tzinfo=UTC))
    registry.schedule.add_window("brownout", dt.datetime(2030, 9, 1, 8, tzinfo=UTC), dt.datetime(2030, 9, 1, 20, tzinfo=UTC),
                        note="the long one")
    registry.schedule.add_window("sunset", dt.datetime(2031, 1, 15, 12, 0, 30, tzinfo=UTC))
    gateway.set_clock(lambda: dt.datetime(2030, 7, 1, tzinfo=UTC))  # the first brownout is over

    text = ssh_client().run("guide").stdout.decode()
    assert "- first-project: 1 upload(s), the last on 2030-03-04 05:06 UTC" in text
    assert "- second-project:" in text
    assert (f"- {user_key.fingerprint} ssh-ed25519 (alice@test)\n"
            "  last used 2030-04-05 06:07 UTC; the key of this login") in text
    assert "Notice period since 2030-01-01 00:00 UTC." in text
    assert "Next brownout: 2030-09-01 08:00 UTC\n  to 2030-09-01 20:00 UTC (the long one)." in text
    assert "Sunset: 2031-01-15 12:00:30 UTC." in text
    assert "2030-06-01" not in text
    assert "one account-wide token covers\nthem all" in text  # two projects: no single project scope


def test_guide_without_uploads_or_dates(gateway, user_keys):
    """A user who never uploaded gets an account-wide token first, and no invented dates."""
    register_account(gateway, "bob", user_keys["bob"], email="bob@example.org", exempt=True)
    text = admin(gateway.settings, "guide", "bob").output
    assert "No upload through the SSH path yet." in text
    assert "not used yet" in text
    assert "An account-wide token is needed for a project's first upload" in text
    assert "No dates are set yet" in text
    assert "Your account is exempt from brownouts and the sunset" in text


def test_guide_formats_carry_the_same_commands(gateway, alice):
    """Markdown and JSON carry the same commands and ~/.pypirc as the terminal text."""
    settings = gateway.settings
    text = admin(settings, "guide", "alice").output
    markdown = admin(settings, "guide", "alice", "--format", "markdown").output
    data = json.loads(admin(settings, "guide", "alice", "--format", "json").output)
    assert markdown.startswith("# Switching account 'alice'")
    assert "```\npython -m build\ntwine check dist/*\ntwine upload dist/*\n```" in markdown
    assert "    python -m build\n    twine check dist/*\n    twine upload dist/*\n" in text
    assert f"```\n{data['pypirc']}```" in markdown
    assert f"repository = {settings.upstream_url}" in data["pypirc"]  # this gateway's upstream, not pypi.org
    assert data["ci_environment"]["TWINE_USERNAME"] == "__token__"
    assert data["ci_environment"]["TWINE_REPOSITORY_URL"] == settings.upstream_url
    for command in data["commands"].values():
        assert command in text and command in markdown


def test_guide_for_default_index_mentions_trusted_publishing(gateway, alice):
    """Against the public index the pypirc needs no repository line and trusted publishing is offered."""
    settings = gateway.settings.replace(upstream_url="https://upload.pypi.org/legacy/")
    data = json.loads(admin(settings, "guide", "alice", "--format", "json").output)
    assert data["pypirc"] == "[pypi]\nusername = __token__\npassword = <your API token, pypi-...>\n"
    assert data["steps"][4]["trusted_publishing"] == "https://docs.pypi.org/trusted-publishers/"
    assert "TWINE_REPOSITORY_URL" not in data["ci_environment"]


def test_guide_for_unknown_account_says_how_to_find_one(gateway):
    """An unknown name is refused with the command that lists accounts."""
    result = admin(gateway.settings, "guide", "nobody")
    assert result.exit_code == 1
    assert "no account named 'nobody'" in result.output and "accounts list" in result.output

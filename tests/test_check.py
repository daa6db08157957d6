"""`pypissh-gateway check` finds each problem an operator can make, one line per problem with its
fix, and exit status 1; `check --show` prints the effective settings with their sources.

Each test works on a copy of one gateway set up with the real commands (`init`, `accounts add`,
`set-token`), checked against the testbed's TLS pypiserver as the upstream.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from gateway.tokens import TokenBox, new_key, parse_keys
from tests.cli import copy_home, environment, home_registry, prepare_home, run_cli

TOKEN = "pypi-AgEIcHlwaS5vcmcCJGNoZWNrLXRlc3QtdG9rZW4"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, upstream) -> Path:
    """A home set up as an operator does, with one account and its token stored."""
    return prepare_home(tmp_path_factory.mktemp("check") / "home",
                        [(("pypissh-gateway", "init"), ""), (("pypissh-migrate", "accounts", "add", "alice"), ""),
                         (("pypissh-migrate", "accounts", "set-token", "alice"), TOKEN + "\n")])


@pytest.fixture
def home(prepared, tmp_path) -> Path:
    """This test's copy of the prepared home (modes kept)."""
    return copy_home(prepared, tmp_path)


def _environment(home: Path, upstream, **settings: str) -> dict[str, str]:
    env = environment(PYPISSH_HOME=str(home), PYPISSH_UPSTREAM_URL=upstream.url,
                      PYPISSH_UPSTREAM_CA_BUNDLE=str(upstream.ca_file))
    env.update({f"PYPISSH_{name.upper()}": value for name, value in settings.items()})
    return {k: v for k, v in env.items() if v != ""}


def check(home: Path, upstream, *args: str, **settings: str) -> subprocess.CompletedProcess:
    return run_cli("pypissh-gateway", *args, "check", env=_environment(home, upstream, **settings))


def failures(done: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix("[FAIL] ") for line in done.stdout.splitlines() if line.startswith("[FAIL] ")]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sound_setup_passes_every_check(home, upstream):
    """On the gateway `init` made, every line is ok: keys, registry, the token opens, the upstream
    answered over verified TLS."""
    done = check(home, upstream)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith("[ok] ") for line in lines), lines
    assert any("host keys: ssh-ed25519 SHA256:" in line for line in lines)
    assert f"[ok] registry at sqlite:///{home}/pypissh.sqlite3: reachable, schema current" in lines
    assert "[ok] secret key opens all 1 stored token(s)" in lines
    assert any(line.startswith(f"[ok] upstream {upstream.url} answered HTTP ") and "over verified TLS" in line
               for line in lines)


def test_offline_check_leaves_the_upstream_alone(home, upstream):
    """`check --offline` (the unit's ExecStartPre) passes with the upstream unreachable and says
    it did not contact it; without the flag the same set-up fails on the upstream."""
    unreachable = f"https://127.0.0.1:{_closed_port()}/"
    env = _environment(home, upstream, upstream_url=unreachable)
    offline = run_cli("pypissh-gateway", "check", "--offline", env=env)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert f"[ok] upstream {unreachable} not contacted (--offline); `pypissh-gateway check` tries it for real" \
        in offline.stdout.splitlines()
    online = run_cli("pypissh-gateway", "check", env=env)
    assert online.returncode == 1
    assert [line for line in failures(online) if line.startswith(f"upstream {unreachable}")]


def _chmod(relative: str, mode: int) -> Callable[[Path], dict[str, str]]:
    def change(home: Path) -> dict[str, str]:
        (home / relative).chmod(mode)
        return {}

    return change


def _settings(**values: str) -> Callable[[Path], dict[str, str]]:
    return lambda _home: values


def _writable_config(home: Path) -> dict[str, str]:
    config = home / "config.toml"
    config.write_text('ssh_user = "submit"\n')
    config.chmod(0o664)
    return {"config": str(config)}


def _config_with_password(home: Path) -> dict[str, str]:
    """A readable config file that holds the mail server's password."""
    config = home / "config.toml"
    config.write_text('smtp_url = "smtp://mailer:mail-pass@127.0.0.1:25"\n')
    config.chmod(0o644)
    return {"config": str(config)}


def _foreign_secret_key(home: Path) -> dict[str, str]:
    (home / "secret.key").write_text(new_key() + "\n")
    return {}


def _one_token_from_elsewhere(home: Path) -> dict[str, str]:
    registry = home_registry(home)
    registry.accounts.add_account("bob")
    registry.accounts.set_token_ciphertext("bob", TokenBox(parse_keys(new_key())).seal(TOKEN))
    registry.close()
    return {}


def _without(relative: str) -> Callable[[Path], dict[str, str]]:
    def change(home: Path) -> dict[str, str]:
        (home / relative).unlink()
        return {}

    return change


PROBLEMS = {
    "plain-http-upstream": (_settings(upstream_url="http://127.0.0.1:9/legacy/", upstream_ca_bundle=""),
                            "upstream_url http://127.0.0.1:9/legacy/ is plain http: API tokens and uploads would "
                            "cross the network in cleartext; use the upload API's https:// address"),
    "plain-http-index": (_settings(index_url="http://127.0.0.1:9/simple/"),
                         "index_url http://127.0.0.1:9/simple/ is plain http: what it lists could be forged on the "
                         "way, and it decides who counts as migrated; use the index's https:// address"),
    "unreachable-upstream": (lambda _home: {"upstream_url": f"https://127.0.0.1:{_closed_port()}/legacy/"},
                             "is unreachable (Connection refused); check upstream_url, DNS and the firewall"),
    "upstream-not-verified": (_settings(upstream_ca_bundle=""),
                              "presented a certificate that the system CAs cannot verify; set upstream_ca_bundle "
                              "to the CA file that signed it"),
    "ca-bundle-missing": (lambda home: {"upstream_ca_bundle": str(home / "missing-ca.pem")},
                          "missing-ca.pem does not exist; point it at the CA file that signed the upstream's "
                          "certificate"),
    "smtp-gopher": (_settings(smtp_url="gopher://x"), "smtp_url 'gopher://x' is not a mail server URL; write "
                                                      "smtp://HOST:25"),
    "health-on-listen": (_settings(listen="127.0.0.1:9122", health_listen="127.0.0.1:9122"),
                         "health_listen is the same address as listen (127.0.0.1:9122); give the health endpoints "
                         "a port of their own"),
    "host-key-0644": (_chmod("keys/ssh_host_ed25519_key", 0o644),
                      "host private key {home}/keys/ssh_host_ed25519_key has mode 0644, open to group or others; "
                      "run chmod 600 {home}/keys/ssh_host_ed25519_key"),
    "secret-key-0640": (_chmod("secret.key", 0o640), "secret key file {home}/secret.key has mode 0640, open to group "
                                                     "or others; run chmod 600 {home}/secret.key"),
    "registry-0644": (_chmod("pypissh.sqlite3", 0o644), "registry file {home}/pypissh.sqlite3 has mode 0644, open to "
                                                        "group or others; run chmod 600 {home}/pypissh.sqlite3"),
    "config-group-writable": (_writable_config, "configuration file {home}/config.toml has mode 0664, writable by "
                                                "group or others; run chmod go-w {home}/config.toml"),
    "config-with-password-0644": (_config_with_password, "configuration file {home}/config.toml has mode 0644 and "
                                                         "holds a password (in database_url, smtp_url or "
                                                         "secret_key); run chmod 600 {home}/config.toml"),
    "home-group-writable": (_chmod(".", 0o770), "home {home} has mode 0770, writable by group or others, who could "
                                                "replace the keys in it; run chmod go-w {home}"),
    "host-key-dir-world-writable": (_chmod("keys", 0o757), "host_key_dir {home}/keys has mode 0757, writable by "
                                                           "group or others"),
    "secret-opens-no-token": (_foreign_secret_key, "1 of 1 stored token(s) do not open with the secret key in "
                                                   "{home}/secret.key; set secret_key_file to the key they were "
                                                   "sealed with"),
    "secret-opens-not-all": (_one_token_from_elsewhere, "1 of 2 stored token(s) do not open"),
    "secret-key-missing": (_without("secret.key"), "no secret key file at {home}/secret.key"),
    "registry-missing": (_without("pypissh.sqlite3"), "no registry at sqlite:///{home}/pypissh.sqlite3; create it "
                                                      "with `pypissh-gateway init`"),
    "workers-zero": (_settings(workers="0"), "setting workers must be at least 1, not 0 (set by PYPISSH_WORKERS)"),
    "negative-limit": (_settings(max_sessions_per_account="-1"),
                       "setting max_sessions_per_account must be 0 or more, not -1"),
}


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_check_finds_the_problem_and_says_how_to_fix_it(name, home, upstream):
    """Exit status 1 and exactly one failure line, the one naming this problem and its fix."""
    change, expected = PROBLEMS[name]
    settings = change(home)
    config = settings.pop("config", None)
    done = check(home, upstream, *(("--config", config) if config else ()), **settings)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert failures(done) == [next(f for f in failures(done) if expected.format(home=home) in f)], done.stdout


def test_every_problem_at_once_gets_a_line_of_its_own(home, upstream):
    """Several slips together: one failure line each, none hides another."""
    (home / "keys" / "ssh_host_rsa_key").chmod(0o644)
    (home / "pypissh.sqlite3").chmod(0o644)
    done = check(home, upstream, upstream_url="http://upload.example/legacy/", upstream_ca_bundle="",
                 smtp_url="gopher://x", workers="0", max_startups="-3")
    assert done.returncode == 1
    found = failures(done)
    assert len(found) == 6, done.stdout
    for part in ("workers must be at least 1", "max_startups must be 0 or more", "smtp_url 'gopher://x'",
                 "ssh_host_rsa_key has mode 0644", "pypissh.sqlite3 has mode 0644", "is plain http"):
        assert sum(part in line for line in found) == 1, part


def test_show_prints_every_setting_with_its_source_and_secrets_masked(home, upstream, tmp_path):
    """Like `sshd -T`: each setting once with default, file PATH, env NAME or flag; the secret key
    and passwords in URLs are masked."""
    config = tmp_path / "config.toml"
    config.write_text('ssh_user = "upload"\nsmtp_url = "smtp+starttls://mailer:mail-pass@mail:587"\n')
    env = _environment(home, upstream, secret_key=new_key(), database_url="postgresql://gw:db-pass@db:5432/gw")
    done = run_cli("pypissh-gateway", "--config", str(config), "--set", "workers=3", "check", "--show", env=env)
    assert done.returncode == 0, done.stderr
    lines = {line.split(" = ", 1)[0]: line for line in done.stdout.splitlines() if " = " in line}
    assert lines["ssh_user"] == f'ssh_user = "upload"  # file {config}'
    assert lines["smtp_url"] == f'smtp_url = "smtp+starttls://mailer:***@mail:587"  # file {config}'
    assert lines["workers"] == "workers = 3  # flag"
    assert lines["secret_key"] == 'secret_key = "***"  # env PYPISSH_SECRET_KEY'
    assert lines["database_url"] == 'database_url = "postgresql://gw:***@db:5432/gw"  # env PYPISSH_DATABASE_URL'
    assert lines["home"] == f'home = "{home}"  # env PYPISSH_HOME'
    assert lines["host_key_dir"] == f'host_key_dir = "{home}/keys"  # default'
    assert lines["drain_seconds"] == "drain_seconds = 60.0  # default"
    assert lines["upstream_ca_bundle"] == f'upstream_ca_bundle = "{upstream.ca_file}"  # env PYPISSH_UPSTREAM_CA_BUNDLE'
    assert "db-pass" not in done.stdout and "mail-pass" not in done.stdout
    assert env["PYPISSH_SECRET_KEY"] not in done.stdout
    from gateway.settings import Settings
    assert set(lines) == set(vars(Settings()))

"""Operator mistakes with both command-line tools: each ends in one line on stderr that says what
to do, and a non-zero exit status; never a traceback, never a state file nobody asked for.

Every case runs the real console script in a process of its own. Most run against one gateway set
up with `pypissh-gateway init` (a registry with account alice and her key); each case's own files
are made in a fresh folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tests.cli import copy_home, environment, home_registry, prepare_home, program, run_cli
from tests.helpers import wait_until

SETPRIV = shutil.which("setpriv")
TOKEN = "pypi-AgEIcHlwaS5vcmcCJGFsaWNlLXRva2VuLW1pc3Rha2Vz"


@dataclass(frozen=True)
class Mistake:
    program: str  # pypissh-gateway | pypissh-migrate
    args: tuple[str, ...]  # {case} is the case's own folder, {home} the prepared gateway's home
    expect: str  # a part of the one line on stderr: what to do about it
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    unprivileged: bool = False  # run without the capability that lets root read any file
    stdin: str = ""
    # {case}/home: a copy of the prepared gateway owned by another user, its folders 0700, so
    # this process (unprivileged) may not enter it: an admin running the tools as their own login.
    foreign_home: bool = False
    # A change to {case}/home, this case's own copy of the prepared gateway.
    home_change: Callable[[Path], None] | None = None


def _write(name: str, data: bytes, mode: int | None = None) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        path = folder / name
        path.write_bytes(data)
        if mode is not None:
            path.chmod(mode)

    return prepare


def _private_key(folder: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "id_ed25519")], check=True)


def _chmod(relative: str, mode: int) -> Callable[[Path], None]:
    return lambda home: (home / relative).chmod(mode)


def _token_from_elsewhere(home: Path) -> None:
    """alice's token sealed under a secret key this gateway does not have."""
    from gateway.tokens import TokenBox, new_key, parse_keys

    registry = home_registry(home)
    try:
        registry.accounts.set_token_ciphertext("alice", TokenBox(parse_keys(new_key())).seal(TOKEN))
    finally:
        registry.close()


def _two_secret_keys(folder: Path) -> None:
    from gateway.tokens import new_key

    (folder / "two.key").write_text(f"{new_key()}\n{new_key()}\n")


MISTAKES = {
    # -- the configuration file
    "config-is-a-directory": Mistake("pypissh-gateway", ("--config", "{case}", "check"),
                                     "is a directory; give --config (or PYPISSH_CONFIG) the TOML file itself"),
    "config-not-utf8": Mistake("pypissh-migrate", ("--config", "{case}/c.toml", "accounts", "list"),
                               "is not UTF-8 text, which TOML requires; save it as UTF-8",
                               prepare=_write("c.toml", b'ssh_user = "caf\xe9"\n')),
    "config-unreadable": Mistake("pypissh-gateway", ("--config", "{case}/c.toml", "check"),
                                 "cannot read configuration file", unprivileged=True,
                                 prepare=_write("c.toml", b'ssh_user = "submit"\n', mode=0)),
    "config-not-toml": Mistake("pypissh-gateway", ("--config", "{case}/c.toml", "serve"),
                               "is not valid TOML", prepare=_write("c.toml", b"listen = \n")),
    "config-missing": Mistake("pypissh-migrate", ("--config", "{case}/nowhere.toml", "report"),
                              "does not exist; give --config"),
    "config-misspelt-setting": Mistake("pypissh-gateway", ("--config", "{case}/c.toml", "check"),
                                       "did you mean 'database_url'?",
                                       prepare=_write("c.toml", b'databse_url = "sqlite:////x"\n')),
    "config-word-for-number": Mistake("pypissh-gateway", ("--config", "{case}/c.toml", "serve"),
                                      "setting workers must be a whole number, not 'four' (set in {case}/c.toml)",
                                      prepare=_write("c.toml", b'workers = "four"\n', mode=0o600)),
    "config-word-for-number-fast-path": Mistake("pypissh-gateway", ("--config", "{case}/c.toml", "stdio", "--account",
                                                                    "alice"),
                                                "setting max_upload_bytes must be a whole number, not 'big' (set in "
                                                "{case}/c.toml)",
                                                prepare=_write("c.toml", b'max_upload_bytes = "big"\n', mode=0o600)),
    # -- settings from flags and the environment
    "set-after-the-command": Mistake("pypissh-gateway", ("serve", "--set", "log_level=LOUD"),
                                     "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD' "
                                     "(set by a command-line flag)"),
    "set-after-a-subcommand": Mistake("pypissh-migrate", ("accounts", "list", "--set", "colour=blue"),
                                      "unknown setting 'colour'"),
    "database-scheme-misspelt": Mistake("pypissh-migrate", ("--set", "database_url=postgress://x/y", "accounts", "list"),
                                        "(postgres:// is spelt postgresql://); write sqlite:///PATH or postgresql://"),
    "database-url-is-a-path": Mistake("pypissh-migrate", ("--set", "database_url=/tmp/x.sqlite3", "report"),
                                      "for a SQLite file write sqlite:////tmp/x.sqlite3"),
    "log-level-loud": Mistake("pypissh-gateway", ("--set", "log_level=LOUD", "serve"),
                              "log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'"),
    "set-without-value": Mistake("pypissh-migrate", ("--set", "listen", "accounts", "list"),
                                 "--set takes NAME=VALUE, not 'listen'"),
    "set-unknown-setting": Mistake("pypissh-migrate", ("--set", "colour=blue", "keys", "list"),
                                   "unknown setting 'colour'"),
    "workers-zero": Mistake("pypissh-gateway", ("serve",), "workers must be at least 1, not 0 (set by PYPISSH_WORKERS)",
                            env={"PYPISSH_WORKERS": "0"}),
    "negative-limit": Mistake("pypissh-gateway", ("--set", "max_upload_bytes=-1", "serve"),
                              "max_upload_bytes must be at least 1, not -1"),
    "timeout-not-a-number": Mistake("pypissh-migrate", ("accounts", "list"),
                                    "read_timeout must be a number, not 'soon' (set by PYPISSH_READ_TIMEOUT)",
                                    env={"PYPISSH_READ_TIMEOUT": "soon"}),
    "smtp-gopher": Mistake("pypissh-migrate", ("--set", "smtp_url=gopher://x", "notify", "--reminders"),
                           "smtp_url 'gopher://x' is not a mail server URL; write smtp://HOST:25"),
    "health-on-listen": Mistake("pypissh-gateway", ("--set", "listen=127.0.0.1:2222", "--set",
                                                    "health_listen=127.0.0.1:2222", "serve"),
                                "give the health endpoints a port of their own"),
    "listen-not-host-port": Mistake("pypissh-gateway", ("serve", "--listen", "nowhere"),
                                    "'nowhere' is not HOST:PORT; write for example 127.0.0.1:2222"),
    "public-port-too-high": Mistake("pypissh-migrate", ("--set", "public_port=70000", "guide", "alice"),
                                    "ports go from 1 to 65535"),
    "home-relative": Mistake("pypissh-migrate", ("accounts", "list"), "home must be an absolute path, not 'state'",
                             env={"PYPISSH_HOME": "state"}),
    "home-is-a-file": Mistake("pypissh-gateway", ("--home", "{case}/c.toml", "check"), "is a file",
                              prepare=_write("c.toml", b"")),
    # -- state that is missing or wrong
    "registry-missing": Mistake("pypissh-migrate", ("report",), "no registry at sqlite:///{case}/none/pypissh.sqlite3; "
                                "create it with `pypissh-gateway init`", env={"PYPISSH_HOME": "{case}/none"}),
    "registry-unreachable": Mistake("pypissh-gateway", ("--set", "database_url=postgresql://gw:s3cret@127.0.0.1:1/gw",
                                                        "db", "upgrade"),
                                    "cannot open the registry at postgresql://gw:***@127.0.0.1:1/gw"),
    "secret-key-missing": Mistake("pypissh-migrate", ("--set", "secret_key_file={case}/secret.key", "accounts",
                                                      "set-token", "alice"),
                                  "no secret key file at {case}/secret.key", stdin="pypi-AgEIcHlwaS5vcmcexample\n"),
    "secret-key-too-short": Mistake("pypissh-migrate", ("--set", "secret_key=short", "accounts", "set-token", "alice"),
                                    "a passphrase of at least 32 characters", stdin="pypi-AgEIcHlwaS5vcmcexample\n"),
    "serve-plain-http": Mistake("pypissh-gateway", ("serve", "--upstream-url", "http://127.0.0.1:9/legacy/"),
                                "is plain http: API tokens and uploads would cross the network in cleartext"),
    "serve-ca-bundle-missing": Mistake("pypissh-gateway", ("--set", "upstream_ca_bundle={case}/ca.pem", "serve"),
                                       "upstream_ca_bundle {case}/ca.pem does not exist"),
    "serve-without-host-keys": Mistake("pypissh-gateway", ("--set", "host_key_dir={case}/keys", "serve"),
                                       "no host keys in {case}/keys/; run `pypissh-gateway keygen`"),
    # -- serve refuses what check fails
    "serve-host-key-0644": Mistake("pypissh-gateway", ("serve",), "host private key {case}/home/keys/ssh_host_ed25519_key "
                                   "has mode 0644, open to group or others; run chmod 600 {case}/home/keys/"
                                   "ssh_host_ed25519_key; or start with --insecure-modes to serve anyway",
                                   home_change=_chmod("keys/ssh_host_ed25519_key", 0o644)),
    "serve-secret-key-0644": Mistake("pypissh-gateway", ("serve",), "secret key file {case}/home/secret.key has mode "
                                     "0644", home_change=_chmod("secret.key", 0o644)),
    "serve-home-group-writable": Mistake("pypissh-gateway", ("serve",), "home {case}/home has mode 0770, writable by "
                                         "group or others", home_change=_chmod(".", 0o770)),
    "serve-config-password-readable": Mistake(
        "pypissh-gateway", ("--config", "{case}/c.toml", "serve"),
        "configuration file {case}/c.toml has mode 0644 and holds a password",
        prepare=_write("c.toml", b'database_url = "postgresql://gw:s3cret@127.0.0.1:1/gw"\n', mode=0o644)),
    "serve-token-unopenable": Mistake("pypissh-gateway", ("serve",), "1 of 1 stored token(s) do not open with the "
                                      "secret key in {case}/home/secret.key", home_change=_token_from_elsewhere),
    # -- a gateway another user owns
    "foreign-home-serve": Mistake("pypissh-gateway", ("serve",), "the gateway's files there belong to user nobody: run "
                                  "the command as that user (sudo -u nobody pypissh-gateway serve)", foreign_home=True),
    "foreign-home-report": Mistake("pypissh-migrate", ("report",), "(sudo -u nobody pypissh-migrate report), or point "
                                   "home (--home, PYPISSH_HOME) at a gateway of your own", foreign_home=True),
    "foreign-home-accounts-list": Mistake("pypissh-migrate", ("accounts", "list"), "permission denied on {case}/home/",
                                          foreign_home=True),
    "foreign-home-init": Mistake("pypissh-gateway", ("init",), "permission denied on {case}/home/",
                                 foreign_home=True),
    "foreign-home-check": Mistake("pypissh-gateway", ("check",), "permission denied on {case}/home/",
                                  foreign_home=True),
    # -- what admins type
    "private-key-given": Mistake("pypissh-migrate", ("keys", "add", "alice", "{case}/id_ed25519"),
                                 "{case}/id_ed25519 is a private key; give the .pub file "
                                 "(ssh-keygen -y -f {case}/id_ed25519 > {case}/id_ed25519.pub)", prepare=_private_key),
    "key-file-binary": Mistake("pypissh-migrate", ("keys", "add", "alice", "{case}/k.bin"),
                               "is not a text file of public keys", prepare=_write("k.bin", b"\xff\xfe\x00\x81")),
    "key-file-missing": Mistake("pypissh-migrate", ("keys", "add", "alice", "{case}/none.pub"),
                                "see `pypissh-migrate keys add --help`"),
    "key-for-unknown-account": Mistake("pypissh-migrate", ("keys", "add", "nobody", "{home}/user.pub"),
                                       "no account named 'nobody'; `pypissh-migrate accounts list` shows them"),
    "restore-unknown-key": Mistake("pypissh-migrate", ("keys", "restore", "SHA256:nothing"),
                                   "`pypissh-migrate keys list --all` shows them"),
    "email-not-an-address": Mistake("pypissh-migrate", ("accounts", "add", "kate", "--email", "not-an-email"),
                                    "'not-an-email' is not an email address (An email address must have an @-sign)"),
    "email-update-not-an-address": Mistake("pypissh-migrate", ("accounts", "update", "alice", "--email", "a@b"),
                                           "'a@b' is not an email address"),
    "token-as-argument": Mistake("pypissh-migrate", ("accounts", "set-token", "alice", "--token", "pypi-secret"),
                                 "a token is never given on the command line"),
    "unknown-command": Mistake("pypissh-migrate", ("acounts", "list"), "No such command 'acounts'"),
    "report-bad-since": Mistake("pypissh-migrate", ("report", "--since", "last tuesday"),
                                "see `pypissh-migrate report --help`"),
    "import-without-sources": Mistake("pypissh-migrate", ("import-legacy",),
                                      "give at least one of --authorized-keys, --users, --keys"),
    # -- irreversible commands in a script, without --yes
    "keygen-force-unconfirmed": Mistake("pypissh-gateway", ("keygen", "--force"),
                                        "replacing the host keys needs a confirmation: run the command on a terminal "
                                        "to answer, or add --yes in a script"),
    "pause-unconfirmed": Mistake("pypissh-migrate", ("schedule", "pause"), "pausing every upload needs a confirmation"),
    "retire-unconfirmed": Mistake("pypissh-migrate", ("--set", "secret_key_file={case}/two.key", "rotate-secret",
                                                      "--retire-old"),
                                  "dropping the old secret keys needs a confirmation", prepare=_two_secret_keys),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A gateway home made by `pypissh-gateway init`, with account alice and her key."""
    home = tmp_path_factory.mktemp("gateway") / "home"
    prepare_home(home, [(("pypissh-gateway", "init"), ""), (("pypissh-migrate", "accounts", "add", "alice"), "")])
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "user")], check=True)
    return home


def _without_file_privileges() -> list[str]:
    """A command prefix under which root, too, obeys file modes (no CAP_DAC_OVERRIDE, no
    CAP_DAC_READ_SEARCH); nothing is needed for an ordinary user."""
    if os.geteuid() != 0:
        return []
    if SETPRIV is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's file privileges")
    return [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", "--"]


def _foreign_copy(prepared: Path, home: Path) -> Path:
    """A copy of the prepared gateway owned by user nobody, every folder 0700. The interpreter of
    this suite may live where nobody cannot read, so the command runs as this user without the
    file privileges (see `_without_file_privileges`): to it, the copy is another user's."""
    if os.geteuid() != 0:
        pytest.skip("giving files to another user needs root")
    nobody = pwd.getpwnam("nobody")
    shutil.copytree(prepared, home)
    for path in [home, *home.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        if path.is_dir():
            path.chmod(0o700)
    return home


def _run(mistake: Mistake, home: Path, case: Path) -> subprocess.CompletedProcess:
    def fill(text: str) -> str:
        return text.replace("{case}", str(case)).replace("{home}", str(home))

    if mistake.foreign_home:
        home = _foreign_copy(home, case / "home")
    elif mistake.home_change is not None:
        home = copy_home(home, case)
        mistake.home_change(home)
    env = environment(**{"PYPISSH_HOME": str(home), **{k: fill(v) for k, v in mistake.env.items()}})
    prefix = _without_file_privileges() if mistake.unprivileged or mistake.foreign_home else []
    return run_cli(mistake.program, *map(fill, mistake.args), env=env, stdin=mistake.stdin, prefix=prefix)


@pytest.mark.parametrize("name", list(MISTAKES))
def test_operator_mistake_gets_one_line_that_says_what_to_do(name, prepared, tmp_path):
    """One line on stderr naming the fix, a non-zero exit, no traceback, nothing left in the current
    directory."""
    mistake = MISTAKES[name]
    case = tmp_path
    if mistake.prepare is not None:
        mistake.prepare(case)
    own_home = mistake.foreign_home or mistake.home_change is not None
    before = sorted([p.name for p in case.iterdir()] + (["home"] if own_home else []))
    done = _run(mistake, prepared, case)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ")
    assert mistake.expect.replace("{case}", str(case)).replace("{home}", str(prepared)) in lines[0], lines[0]
    assert sorted(p.name for p in case.iterdir()) == before  # no registry, key or folder appeared


def test_at_least_25_mistakes_across_both_tools():
    """The list covers both programs and more than 25 mistakes."""
    assert len(MISTAKES) >= 25
    assert {m.program for m in MISTAKES.values()} == {"pypissh-gateway", "pypissh-migrate"}


def test_the_unreadable_config_really_is_unreadable_to_that_process(tmp_path):
    """The config-unreadable case tests what it says: its file cannot be opened by the process it runs as."""
    mistake = MISTAKES["config-unreadable"]
    mistake.prepare(tmp_path)
    assert stat.S_IMODE((tmp_path / "c.toml").stat().st_mode) == 0
    probe = subprocess.run([*_without_file_privileges(), sys.executable, "-c", f"open({str(tmp_path / 'c.toml')!r})"],
                           capture_output=True, text=True)
    assert probe.returncode == 1 and "PermissionError" in probe.stderr


# Makes psycopg absent for one command, as on a core install without the [postgres] extra.
WITHOUT_PSYCOPG = 'import sys\nsys.modules["psycopg"] = None\n'


def test_check_without_psycopg_names_the_extra_once(tmp_path):
    """`check` with a postgresql:// URL where psycopg is not installed: one [FAIL] line naming the
    [postgres] extra, exit 1, no traceback, the URL's password never shown."""
    (tmp_path / "sitecustomize.py").write_text(WITHOUT_PSYCOPG)
    env = environment(PYTHONPATH=str(tmp_path), PYPISSH_HOME=str(tmp_path / "home"))
    done = run_cli("pypissh-gateway", "--set", "database_url=postgresql://gw:s3cret@127.0.0.1:1/gw",
                   "--set", "upstream_url=https://127.0.0.1:9/legacy/", "check",
                   env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr and "s3cret" not in done.stdout + done.stderr
    extra = [line for line in done.stdout.splitlines() if "pypissh-gateway[postgres]" in line]
    assert extra == ["[FAIL] a postgresql:// database_url needs psycopg: pip install 'pypissh-gateway[postgres]'"]


def _listening_socket(reuse_port: bool) -> socket.socket:
    sock = socket.socket()
    if reuse_port:  # as a second gateway binds it: SO_REUSEPORT would let ours share it silently
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so-reuseport"])
def test_serve_refuses_a_port_another_process_holds(reuse_port, prepared, tmp_path):
    """A listen port held by anything but this serve's own workers (a stray second gateway too)
    stops serve with one line naming `listen`."""
    home = copy_home(prepared, tmp_path)
    with _listening_socket(reuse_port) as holder:
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        done = run_cli("pypissh-gateway", "serve", "--listen", address, "--health-listen", "127.0.0.1:0",
                       env=environment(PYPISSH_HOME=str(home)))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"Error: listen {address} is already in use by another process, not one of "
                                        "this gateway's workers; stop it (`ss -ltnp` shows which), or set listen to a "
                                        "free address"]


def test_busy_health_port_names_health_listen(prepared, tmp_path):
    """A health port in use: one line naming health_listen, the setting to change."""
    home = copy_home(prepared, tmp_path)
    with _listening_socket(False) as holder:
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        done = run_cli("pypissh-gateway", "serve", "--listen", "127.0.0.1:0", "--health-listen", address,
                       env=environment(PYPISSH_HOME=str(home)))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert line.startswith(f"Error: cannot listen on {address} (health_listen): ")
    assert line.endswith("or set health_listen to a free address")


def test_insecure_modes_serves_and_says_so_in_the_log(prepared, tmp_path):
    """With --insecure-modes, serve starts on a 0644 host key and logs a warning naming it."""
    home = copy_home(prepared, tmp_path)
    (home / "keys" / "ssh_host_ed25519_key").chmod(0o644)
    log = tmp_path / "gateway.log"
    env = environment(PYPISSH_HOME=str(home), PYPISSH_LOG_FILE=str(log))
    with subprocess.Popen(program("pypissh-gateway", "serve", "--insecure-modes", "--listen", "127.0.0.1:0",
                                  "--health-listen", "127.0.0.1:0"), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            wait_until(lambda: "listening on" in (log.read_text() if log.exists() else ""),
                       what="serve to listen", timeout=30)
        finally:
            proc.terminate()
            stderr = proc.communicate(timeout=30)[1]
    assert b"Traceback" not in stderr
    warnings = [line for line in log.read_text().splitlines() if "--insecure-modes" in line]
    assert len(warnings) == 1, log.read_text()
    assert "WARNING" in warnings[0]
    assert (f"serving with --insecure-modes although host private key {home}/keys/ssh_host_ed25519_key has mode "
            "0644") in warnings[0]


def test_init_again_points_at_options_that_exist(prepared, tmp_path):
    """`init` on a set-up gateway changes nothing and names `keygen --force` and `keygen --next`,
    options that exist, for replacing or rotating the host keys."""
    home = copy_home(prepared, tmp_path)
    env = environment(PYPISSH_HOME=str(home))
    done = run_cli("pypissh-gateway", "init", env=env)
    assert done.returncode == 0, done.stderr
    assert (f"host keys already exist in {home}/keys/ (`pypissh-gateway keygen --force` replaces them, "
            "`pypissh-gateway keygen --next` starts a rotation)") in done.stdout
    options = run_cli("pypissh-gateway", "keygen", "--help", env=env).stdout
    assert "--force" in options and "--next" in options


def test_set_after_the_command_is_the_same_as_before_it(prepared):
    """`check --show --set NAME=VALUE` shows the value as a flag's, and adds to a --set before the command."""
    env = environment(PYPISSH_HOME=str(prepared))
    done = run_cli("pypissh-gateway", "--set", "ssh_user=upload", "check", "--show", "--set", "listen=127.0.0.1:2022",
                   env=env)
    assert done.returncode == 0, done.stderr
    assert 'listen = "127.0.0.1:2022"  # flag' in done.stdout.splitlines()
    assert 'ssh_user = "upload"  # flag' in done.stdout.splitlines()

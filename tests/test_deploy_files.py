"""The files in deploy/ pass the checks of the programs that read them: `haproxy -c`, `sshd -t`
(and sshd's own view of the effective settings), `systemd-analyze verify`.

Each check runs on the file as shipped; where a path names something that exists only on a
production machine (the installed program), a temporary copy points at an executable that exists
here instead, and nothing else is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from testbed import SOURCE_ROOT
from testbed.sshdutil import SSHD, privilege_separation_dir, remove_wrapper, root_owned_wrapper

DEPLOY = SOURCE_ROOT / "deploy"
INSTALLED_PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def test_haproxy_accepts_the_shipped_configuration():
    """`haproxy -c` accepts deploy/haproxy.cfg exactly as shipped."""
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (./dev test installs it)")
    check = subprocess.run(["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# -- OpenSSH mode ---------------------------------------------------------------------------------
def _point_command_at(snippet: str, program: Path) -> str:
    """The snippet with its AuthorizedKeysCommand program (an absolute path, as sshd requires)
    replaced by `program`; the arguments stay as shipped."""
    shipped = re.search(r"^\s*AuthorizedKeysCommand\s+(\S+)", snippet, re.MULTILINE)
    assert shipped and shipped.group(1).startswith("/"), "AuthorizedKeysCommand needs an absolute path"
    return snippet[:shipped.start(1)] + str(program) + snippet[shipped.end(1):]


def _effective(config: Path, user: str) -> dict[str, str]:
    """sshd's effective settings for a login by `user` (`sshd -T -C`), Match blocks applied."""
    done = subprocess.run([SSHD, "-T", "-f", str(config), "-C", f"user={user},host=localhost,addr=127.0.0.1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def _including(folder: Path, snippet: str) -> Path:
    """A minimal sshd_config that includes `snippet` from a conf.d folder, as on Debian (Include
    first, then the machine's own global settings)."""
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (./dev test installs it)")
    privilege_separation_dir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")], check=True)
    conf_d = folder / "sshd_config.d"
    conf_d.mkdir()
    (conf_d / "pypissh.conf").write_text(snippet)
    config = folder / "sshd_config"
    config.write_text(f"Include {conf_d}/*.conf\nPort 2222\nListenAddress 127.0.0.1\n"
                      f"HostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\nUsePAM no\n"
                      "X11Forwarding yes\n")
    return config


@pytest.fixture
def sshd_config(tmp_path):
    """sshd_config.openssh-mode included, its command pointed at this virtualenv's program."""
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (./dev test installs it)")
    program = root_owned_wrapper(INSTALLED_PROGRAM.resolve())
    try:
        yield _including(tmp_path, _point_command_at((DEPLOY / "sshd_config.openssh-mode").read_text(), program)), program
    finally:
        remove_wrapper(program)


def test_sshd_accepts_the_openssh_mode_snippet(sshd_config):
    """`sshd -t` finds no error or warning in a configuration that includes the shipped snippet."""
    config, _ = sshd_config
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr


def test_snippet_applies_to_the_submit_user_only(sshd_config):
    """For user submit sshd asks the registry, with keys only, no TTY and no forwarding; for anyone
    else, and for the global settings after the Include, the snippet changes nothing."""
    config, program = sshd_config
    submit = _effective(config, "submit")
    assert submit["authorizedkeyscommand"] == (
        f"{program} --config /etc/pypissh/config.toml authorized-keys-command %u %k %t")
    assert submit["authorizedkeyscommanduser"] == "pypissh"
    assert submit["authorizedkeysfile"] == "none"
    for name in ("passwordauthentication", "kbdinteractiveauthentication", "permittty", "x11forwarding"):
        assert submit[name] == "no", name
    assert submit["allowtcpforwarding"] == "no"
    assert submit["maxsessions"] == "10"
    assert "MaxSessions 10" in (DEPLOY / "sshd_config.openssh-mode").read_text()

    other = _effective(config, "alice")
    assert other["authorizedkeyscommand"] == "none"
    assert other["x11forwarding"] == "yes" and other["permittty"] == "yes"


# -- systemd --------------------------------------------------------------------------------------
def test_systemd_unit_verifies_without_a_warning(tmp_path):
    """`systemd-analyze verify` reports nothing about the unit (its program pointed at the
    installed pypissh-gateway of this environment)."""
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (./dev test installs Debian's systemd)")
    text = (DEPLOY / "pypissh-gateway.service").read_text()
    shipped = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
    assert shipped and shipped.group(1).startswith("/")
    unit = tmp_path / "pypissh-gateway.service"
    unit.write_text(text[:shipped.start(1)] + str(INSTALLED_PROGRAM) + text[shipped.end(1):])
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    about_unit = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and about_unit == [], done.stdout + done.stderr


def test_systemd_waits_longer_than_the_drain():
    """The unit's TimeoutStopSec outlasts the example configuration's drain_seconds, so a stop or a
    restart never kills uploads the gateway would have finished."""
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE).group(1))
    config = tomllib.loads((DEPLOY / "config.toml").read_text())
    assert timeout > config["drain_seconds"]
    assert re.search(r"^KillSignal=SIGTERM$", unit, re.MULTILINE)
    assert re.search(r"^ExecStart=\S+ serve$", unit, re.MULTILINE)


def test_unit_and_configuration_share_one_home():
    """The unit's state directory (made 0700 by systemd before the start) is the home that its
    PYPISSH_HOME and the example configuration name."""
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert re.search(r"^StateDirectoryMode=0700$", unit, re.MULTILINE)
    home = f"/var/lib/{state}"
    assert re.search(rf"^Environment=PYPISSH_HOME={re.escape(home)}$", unit, re.MULTILINE)
    assert tomllib.loads((DEPLOY / "config.toml").read_text())["home"] == home


def test_sshd_accepts_the_key_file_snippet_as_shipped(tmp_path):
    """sshd_config.openssh-mode-keyfile, unchanged (its grep exists here): `sshd -t` is silent, and
    for user submit the key is looked up with grep in the replica's file, as the replica's user."""
    config = _including(tmp_path, (DEPLOY / "sshd_config.openssh-mode-keyfile").read_text())
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    submit = _effective(config, "submit")
    assert submit["authorizedkeyscommand"] == "/usr/bin/grep -F -- %k /var/lib/pypissh-gateway/authorized_keys"
    assert (submit["authorizedkeyscommanduser"], submit["authorizedkeysfile"]) == ("pypissh", "none")
    for name in ("passwordauthentication", "kbdinteractiveauthentication", "permittty", "x11forwarding",
                 "allowtcpforwarding"):
        assert submit[name] == "no", name
    assert submit["maxsessions"] == "10"
    assert "MaxSessions 10" in (DEPLOY / "sshd_config.openssh-mode-keyfile").read_text()
    assert _effective(config, "alice")["authorizedkeyscommand"] == "none"


def test_key_file_lines_of_the_example_configuration_fit_the_unit_and_the_snippet():
    """The example's authorized_keys_file, uncommented, is the file the key-file snippet greps, in
    the directory the systemd unit creates (StateDirectory=), and the settings have no problem."""
    from gateway.settings import load, problems

    text = (DEPLOY / "config.toml").read_text()
    names = ("openssh_mode", "shim_socket", "shim_user", "authorized_keys_file", "shim_python")
    enabled = re.sub(rf"(?m)^# ({'|'.join(names)}) = ", r"\1 = ", text)
    config = tomllib.loads(enabled)
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert Path(config["authorized_keys_file"]).parent == Path("/var/lib") / state
    snippet = (DEPLOY / "sshd_config.openssh-mode-keyfile").read_text()
    assert f"AuthorizedKeysCommand /usr/bin/grep -F -- %k {config['authorized_keys_file']}\n" in snippet
    settings = load(None, {}, {name: config[name] for name in names})
    assert settings.authorized_keys_file == config["authorized_keys_file"]
    assert [p for p in problems(settings) if p.setting in ("authorized_keys_file", "shim_python")] == []


def test_openssh_mode_lines_of_the_example_configuration_fit_the_unit():
    """The example configuration's OpenSSH-mode settings, uncommented, load; its shim_socket lies in
    the directory the systemd unit creates (RuntimeDirectory=)."""
    from gateway.settings import load

    text = (DEPLOY / "config.toml").read_text()
    enabled = re.sub(r"(?m)^# (openssh_mode|shim_socket|shim_user) = ", r"\1 = ", text)
    assert enabled != text
    config = tomllib.loads(enabled)
    assert config["openssh_mode"] is True
    unit = (DEPLOY / "pypissh-gateway.service").read_text()
    runtime = re.search(r"^RuntimeDirectory=(\S+)$", unit, re.MULTILINE).group(1)
    assert Path(config["shim_socket"]).parent == Path("/run") / runtime
    settings = load(None, {}, {name: config[name] for name in ("openssh_mode", "shim_socket", "shim_user")})
    assert (settings.openssh_mode, settings.shim_user) == (True, "submit")

"""The SSH surface: public keys only, one exchange or command per session, nothing else offered."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest


@pytest.fixture
def client(alice, ssh_client):
    return ssh_client()


def _ssh(client, *args: str, command: tuple[str, ...] = ()):
    """Run the real ssh client with extra options, at INFO level so refusals are printed."""
    import subprocess

    argv = [*client.argv(*args, log_level="INFO"), "-l", "submit", "127.0.0.1", *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_password_and_keyboard_interactive_are_not_offered(client):
    """A client that will not use a key is told publickey is the only method."""
    result = _ssh(client, "-T", "-o", "PubkeyAuthentication=no",
                  "-o", "PreferredAuthentications=password,keyboard-interactive", command=("whoami",))
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_pty_is_refused(client):
    """`ssh -t` gets the usual PTY refusal."""
    result = _ssh(client, "-tt", command=("whoami",))
    assert "PTY allocation request failed" in result.stderr


def test_subsystems_such_as_sftp_are_refused(client):
    """`ssh -s ... sftp` (and any other subsystem) is refused."""
    result = _ssh(client, "-T", "-s", command=("sftp",))
    assert result.returncode == 255
    assert "subsystem request failed" in result.stderr


def test_local_port_forwarding_is_prohibited(client):
    """Direct TCP forwarding (`-W`, `-L`) is administratively prohibited."""
    result = _ssh(client, "-T", "-W", "127.0.0.1:22")
    assert result.returncode == 255
    assert "administratively prohibited" in result.stderr


def test_remote_port_forwarding_is_refused(client):
    """Remote forwarding (`-R`) is refused."""
    result = _ssh(client, "-T", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:80", command=("whoami",))
    assert result.returncode == 255
    assert "remote port forwarding failed" in result.stderr


def test_x11_forwarding_is_refused(alice, gateway, user_key):
    """An X11 forwarding request fails (checked with asyncssh's client, which reports it)."""

    async def attempt():
        async with asyncssh.connect("127.0.0.1", gateway.port, username="submit", client_keys=[str(user_key.path)],
                                    known_hosts=None, agent_path=None) as conn:
            await conn.run("whoami", x11_forwarding=True, x11_display="127.0.0.1:0", check=False)

    with pytest.raises(asyncssh.ChannelOpenError, match="X11 forwarding request failed"):
        asyncio.run(attempt())


def test_whoami_names_account_and_key(client, user_key):
    """`ssh submit@host whoami` shows the account and the key's fingerprint."""
    result = client.run("whoami")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "account:  alice" in out
    assert user_key.fingerprint in out
    assert "token:    stored" in out


def test_help_lists_commands(client):
    """`help` lists guide, whoami and help."""
    out = client.run("help").stdout.decode()
    for command in ("guide", "whoami", "help"):
        assert f"submit@127.0.0.1 {command}" in out


def test_unknown_command_names_the_valid_ones(client):
    """Any other command is an error naming the valid commands, with a non-zero exit."""
    result = client.run("rm", "-rf", "/")
    assert result.returncode == 2
    assert b"unknown command 'rm -rf /'" in result.stderr
    assert b"guide, whoami, help" in result.stderr

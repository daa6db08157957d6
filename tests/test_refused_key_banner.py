"""The authentication banner a refused key gets: what to do next, the same words whoever holds the
key, and no more often per address than the refused-login log lines.

paramiko hands the banner to the program (its last one, which is ours: it comes just before the
refusal); OpenSSH prints each one on stderr at its default LogLevel.
"""

from __future__ import annotations

import subprocess

import paramiko

from gateway.ops import sessionlog
from gateway.ssh import user_texts
from testbed.harness import GatewayHarness
from tests.helpers import register_account



def _paramiko_login(gateway: GatewayHarness, key_path, user: str = "submit") -> tuple[bool, str | None]:
    """Log in with paramiko, pinning the gateway's host keys: (logged in, the banner it received)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    for line in gateway.known_hosts_line().splitlines():
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        client.get_host_keys().add(entry.hostnames[0], entry.key.get_name(), entry.key)
    try:
        try:
            client.connect("127.0.0.1", gateway.port, username=user, key_filename=str(key_path),
                           look_for_keys=False, allow_agent=False, timeout=30, auth_timeout=30)
            logged_in = True
        except paramiko.AuthenticationException:
            logged_in = False
        banner = client.get_transport().get_banner()
        return logged_in, banner.decode("utf-8") if isinstance(banner, bytes) else banner
    finally:
        client.close()


def _refused_banner(gateway: GatewayHarness, key_path, user: str = "submit") -> str | None:
    logged_in, banner = _paramiko_login(gateway, key_path, user)
    assert not logged_in
    return banner


def test_an_unknown_key_is_told_its_fingerprint_and_the_guide(gateway, alice, user_keys):
    """The banner is exactly the refusal text for this key and the configured guide URL."""
    mallory = user_keys["mallory"]
    assert _refused_banner(gateway, mallory.path) == user_texts.unregistered_key_banner(
        mallory.fingerprint, gateway.settings.help_url)


def test_a_disabled_accounts_key_reads_the_same_as_an_unknown_key(gateway, alice, user_keys):
    """A key of a disabled account gets the banner an unknown key gets, with nothing about the account."""
    register_account(gateway, "bob", user_keys["bob"], email="bob@example.org")
    gateway.registry.accounts.update_account("bob", disabled=True)
    gateway.ticks.advance(gateway.settings.key_cache_seconds + 1)
    bob = _refused_banner(gateway, user_keys["bob"].path)
    mallory = _refused_banner(gateway, user_keys["mallory"].path)
    assert bob is not None and mallory is not None
    assert bob.replace(user_keys["bob"].fingerprint, "KEY") == mallory.replace(user_keys["mallory"].fingerprint, "KEY")
    assert "bob" not in bob


def test_another_user_is_told_which_user_uploads_log_in_as(gateway, alice, user_key):
    """`root@host` with a registered key: refused, with the user uploads log in as (the key of a
    wrong user is never looked up, so the words are the same for any key)."""
    banner = _refused_banner(gateway, user_key.path, user="root")
    assert banner == user_texts.unregistered_key_banner(user_key.fingerprint, gateway.settings.help_url, "submit")
    assert "uploads log in as user 'submit'" in banner


def test_a_registered_key_gets_no_refusal_banner(gateway, alice, user_key):
    """A login that succeeds is not told its key is unregistered."""
    logged_in, banner = _paramiko_login(gateway, user_key.path)
    assert logged_in
    assert banner is None


def test_banners_per_address_are_limited_like_the_refused_login_lines(gateway, alice, user_keys):
    """From one address, the first refusals within a window get the banner and later ones not,
    until the address has been quiet for a window."""
    mallory = user_keys["mallory"].path
    banners = [_refused_banner(gateway, mallory) for _ in range(sessionlog.PER_ADDRESS + 2)]
    assert all(banners[:sessionlog.PER_ADDRESS])
    assert banners[sessionlog.PER_ADDRESS:] == [None, None]
    gateway.ticks.advance(sessionlog.WINDOW)
    assert _refused_banner(gateway, mallory)


def test_each_refused_key_of_a_connection_is_named_once(gateway, alice, user_keys, tmp_path):
    """OpenSSH offering two unregistered keys prints one banner for each, at its default LogLevel."""
    known = tmp_path / "known_hosts"
    known.write_text(gateway.known_hosts_line())
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(gateway.port), "-i", str(user_keys["bob"].path),
         "-i", str(user_keys["mallory"].path), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
         "-T", "-l", "submit", "127.0.0.1", "whoami"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    for key in (user_keys["bob"], user_keys["mallory"]):
        assert result.stderr.count(key.fingerprint) == 1
    assert result.stderr.count("is not registered for uploads here") == 2

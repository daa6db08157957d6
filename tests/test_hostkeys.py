"""Host keys: a replica will not start without them, and a rotation through OpenSSH's host-key
update extension lets real clients learn the next key before it replaces the current one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import cli
from gateway.registry.migrate_db import upgrade
from gateway.ssh import hostkeys
from tests.conftest import SshClient, register_account


def keygen(folder: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--set", f"host_key_dir={folder}", "keygen", *args])
    assert result.exit_code == 0, result.output
    return result.output


def known_hosts(port: int, folder: Path, *names: str) -> str:
    lines = []
    for name in names:
        kind, data = (folder / f"{name}.pub").read_text().split()[:2]
        lines.append(f"[127.0.0.1]:{port} {kind} {data}\n")
    return "".join(lines)


def public_blob(folder: Path, name: str) -> str:
    return (folder / f"{name}.pub").read_text().split()[1]


def test_serve_refuses_to_start_without_host_keys(tmp_path):
    """`serve` with an empty host_key_dir exits with a message saying how to make the keys."""
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    upgrade(url)
    result = CliRunner().invoke(cli, ["--set", f"host_key_dir={tmp_path / 'empty'}", "--set", f"database_url={url}",
                                      "serve"])
    assert result.exit_code != 0
    assert "no host keys" in result.output and "pypissh-gateway keygen" in result.output


def test_clients_learn_the_next_key_and_survive_the_promotion(tmp_path, make_settings, start_gateway, user_key, upstream):
    """ssh with UpdateHostKeys learns a `keygen --next` key, then trusts it and drops the old one after `--promote`."""
    folder = tmp_path / "hostkeys"
    keygen(folder)
    keygen(folder, "--next")
    settings = make_settings(host_key_dir=str(folder))
    harness = start_gateway(settings)
    register_account(harness, "alice", user_key, token=upstream.token)
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts(harness.port, folder, "ssh_host_ed25519_key"))
    client = SshClient(harness, user_key, known)

    learned = _run(client, "whoami")
    assert learned.returncode == 0, learned.stderr
    next_blob = public_blob(folder, "ssh_host_ed25519_next_key")
    assert next_blob in known.read_text(), "the client did not learn the announced next key"

    old_blob = public_blob(folder, "ssh_host_ed25519_key")
    keygen(folder, "--promote")
    assert public_blob(folder, "ssh_host_ed25519_key") == next_blob
    assert len(hostkeys.load(folder)) == 2  # the retired keys are no longer served
    harness.stop()
    promoted = start_gateway(settings.replace(listen=f"127.0.0.1:{harness.port}"))
    after = _run(SshClient(promoted, user_key, known), "whoami")
    assert after.returncode == 0, after.stderr
    assert old_blob not in known.read_text(), "the retired key should leave known_hosts"
    assert next_blob in known.read_text()


def _run(client: SshClient, *command: str):
    """One session with UpdateHostKeys on (it is off when UserKnownHostsFile is set explicitly)."""
    return subprocess.run([*client.argv("-o", "UpdateHostKeys=yes", "-T", "-l", client.user), "127.0.0.1", *command],
                          capture_output=True, timeout=60)

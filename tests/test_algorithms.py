"""SSH algorithms: a modern set by default; `legacy_algorithms` admits clients that need SHA-1
(diffie-hellman-group14-sha1 key exchange, ssh-rsa signatures) and marks their events.

The old client is the real OpenSSH client forced to what OpenSSH 6/7.1 era clients spoke.
"""

from __future__ import annotations

import asyncio
import subprocess

import asyncssh
import pytest

from gateway.ssh import algorithms
from tests.conftest import UserKey, _make_user_key, register_account
from tests.helpers import recorded_events

OLD_CLIENT = ("-o", "KexAlgorithms=diffie-hellman-group14-sha1", "-o", "HostKeyAlgorithms=ssh-rsa",
              "-o", "PubkeyAcceptedAlgorithms=ssh-rsa")
LIST_CLASSIFIERS = b"GET /pypi?:action=list_classifiers HTTP/1.0\r\n\r\n"


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory) -> UserKey:
    return _make_user_key(tmp_path_factory.mktemp("rsakey"), "oldtimer", "rsa", 3072)


def _run(client, *options: str, data: bytes = LIST_CLASSIFIERS) -> subprocess.CompletedProcess:
    """The client at OpenSSH's default LogLevel (INFO), which is where it reports failed negotiations."""
    argv = [("LogLevel=INFO" if arg == "LogLevel=ERROR" else arg) for arg in client.argv(*options)]
    return subprocess.run([*argv, "-T", "-l", "submit", "127.0.0.1"], input=data, capture_output=True, timeout=60)


def test_defaults_name_no_sha1_algorithm():
    """The default lists offer no SHA-1 key exchange, MAC or signature, no GSS, no 64-bit MAC."""
    offered = algorithms.kex_algorithms(False) + algorithms.mac_algorithms(False) + algorithms.signature_algorithms(False)
    assert "diffie-hellman-group14-sha1" not in offered and "hmac-sha1" not in offered and "ssh-rsa" not in offered
    assert not [alg for alg in offered if alg.startswith("gss-") or "umac-64" in alg or alg.endswith("sha1")]
    assert "curve25519-sha256" in offered and "ssh-ed25519" in offered and "rsa-sha2-256" in offered
    legacy = algorithms.kex_algorithms(True) + algorithms.signature_algorithms(True)
    assert "diffie-hellman-group14-sha1" in legacy and "ssh-rsa" in legacy


def test_negotiation_follows_the_clients_order():
    """The negotiated algorithm is the client's first choice that the server offers."""
    assert algorithms.negotiated(["a", "b", "c"], ["c", "b"]) == "b"
    assert algorithms.negotiated(["a"], ["b"]) is None


def test_old_client_is_refused_by_default(gateway, ssh_client, rsa_key):
    """OpenSSH forced to group14-sha1 and ssh-rsa cannot agree on a key exchange with the defaults."""
    register_account(gateway, "oldtimer", rsa_key)
    result = _run(ssh_client(rsa_key), *OLD_CLIENT)
    assert result.returncode == 255
    assert b"no matching key exchange method found" in result.stderr


def test_sha1_host_key_signature_is_refused_by_default(gateway, ssh_client, rsa_key):
    """A client that only verifies ssh-rsa (SHA-1) host key signatures finds no host key it accepts."""
    register_account(gateway, "oldtimer", rsa_key)
    result = _run(ssh_client(rsa_key), "-o", "HostKeyAlgorithms=ssh-rsa")
    assert result.returncode == 255
    assert b"no matching host key type found" in result.stderr


def test_sha1_user_signature_is_refused_by_default(gateway, rsa_key):
    """An RSA key that signs with ssh-rsa (SHA-1) is refused, and the client is told why."""
    # OpenSSH 7.2 and later read the server's server-sig-algs and do not even try ssh-rsa; clients
    # from before it sign with ssh-rsa regardless. asyncssh's client limited to ssh-rsa does the
    # same, so it plays the old client here.
    register_account(gateway, "oldtimer", rsa_key)

    async def login() -> None:
        async with asyncssh.connect("127.0.0.1", gateway.port, username="submit", known_hosts=None,
                                    client_keys=[str(rsa_key.path)], signature_algs=["ssh-rsa"],
                                    agent_path=None, config=None):
            pass

    with pytest.raises(asyncssh.PermissionDenied) as refused:
        asyncio.run(login())
    assert "signed with ssh-rsa (SHA-1), which this gateway refuses" in refused.value.reason
    assert rsa_key.fingerprint in refused.value.reason
    assert recorded_events(gateway.registry) == []


def test_modern_rsa_signature_is_accepted_by_default(gateway, ssh_client, rsa_key):
    """The same RSA key signing with rsa-sha2-256/512 logs in, and the event is not legacy."""
    register_account(gateway, "oldtimer", rsa_key)
    result = _run(ssh_client(rsa_key))
    assert result.returncode == 0, result.stderr
    (event,) = recorded_events(gateway.registry)
    assert event.legacy_crypto is False


def test_old_client_is_accepted_with_legacy_algorithms_and_marked(start_gateway, make_settings, ssh_client,
                                                                  rsa_key, user_key):
    """With legacy_algorithms the forced old client works and its event is marked; a modern one is not."""
    harness = start_gateway(make_settings(legacy_algorithms=True))
    register_account(harness, "oldtimer", rsa_key)
    register_account(harness, "alice", user_key)
    old = _run(ssh_client(rsa_key, harness=harness), *OLD_CLIENT)
    assert old.returncode == 0, old.stderr
    assert old.stdout.startswith(b"HTTP/1.0 200 OK")
    modern = _run(ssh_client(user_key, harness=harness))
    assert modern.returncode == 0, modern.stderr
    marks = {event.account_name: event.legacy_crypto for event in recorded_events(harness.registry)}
    assert marks == {"oldtimer": True, "alice": False}


@pytest.mark.parametrize("option", ["KexAlgorithms=diffie-hellman-group14-sha1", "PubkeyAcceptedAlgorithms=ssh-rsa",
                                    "HostKeyAlgorithms=ssh-rsa", "MACs=hmac-sha1"])
def test_each_legacy_algorithm_alone_marks_the_event(start_gateway, make_settings, ssh_client, rsa_key, option):
    """Any one SHA-1 algorithm in use (key exchange, user signature, host key, MAC) marks the event."""
    harness = start_gateway(make_settings(legacy_algorithms=True))
    register_account(harness, "oldtimer", rsa_key)
    extra = ("-o", "Ciphers=aes128-ctr") if option.startswith("MACs") else ()
    result = _run(ssh_client(rsa_key, harness=harness), "-o", option, *extra)
    assert result.returncode == 0, result.stderr
    (event,) = recorded_events(harness.registry)
    assert event.legacy_crypto is True

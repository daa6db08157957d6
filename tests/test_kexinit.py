"""KEXINIT payloads read without asyncssh (gateway/ssh/kexinit.py), and RFC 4253 section 7's rule
for a guessed key-exchange packet."""

from __future__ import annotations

from gateway.ssh import kexinit
from testbed.guessingclient import kexinit_payload

SERVER = kexinit_payload(["mlkem768x25519-sha256", "curve25519-sha256"], ["ssh-ed25519", "rsa-sha2-512"],
                         guess_follows=False)


def test_parse_reads_the_lists_and_the_guess_flag():
    """The kex and host key lists come out in order, with first_kex_packet_follows."""
    parsed = kexinit.parse(kexinit_payload(["curve25519-sha256", "ext-info-c"], ["ssh-ed25519"]))
    assert parsed is not None
    assert parsed.kex == ("curve25519-sha256", "ext-info-c")
    assert parsed.host_keys == ("ssh-ed25519",)
    assert parsed.first_kex_packet_follows is True


def test_a_cut_payload_is_not_a_kexinit():
    """A payload cut anywhere before the guess flag parses to nothing."""
    payload = kexinit_payload(["curve25519-sha256"], ["ssh-ed25519"])
    assert kexinit.parse(payload[:-5]) is None
    assert kexinit.parse(payload[:30]) is None
    assert kexinit.namelists(payload[:30]) == []


def test_no_guess_is_never_wrong():
    """Without first_kex_packet_follows there is nothing to ignore."""
    client = kexinit_payload(["curve25519-sha256"], ["ssh-ed25519"], guess_follows=False)
    assert not kexinit.guess_is_wrong(client, SERVER)


def test_a_guess_is_wrong_when_the_first_kex_differ_even_if_it_is_negotiated():
    """The client's first choice is offered (and negotiated), but it is not the server's first."""
    client = kexinit_payload(["curve25519-sha256"], ["ssh-ed25519"])
    assert kexinit.guess_is_wrong(client, SERVER)


def test_a_guess_is_wrong_when_the_first_host_key_algorithms_differ():
    """Same first key exchange; the first host key algorithms differ."""
    client = kexinit_payload(["mlkem768x25519-sha256"], ["rsa-sha2-512", "ssh-ed25519"])
    assert kexinit.guess_is_wrong(client, SERVER)


def test_a_guess_is_right_when_both_firsts_match():
    """Same first key exchange and host key algorithm: the guessed packet stands."""
    client = kexinit_payload(["mlkem768x25519-sha256", "curve25519-sha256"], ["ssh-ed25519"])
    assert not kexinit.guess_is_wrong(client, SERVER)

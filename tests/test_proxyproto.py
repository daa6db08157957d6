"""The PROXY protocol: the pure parser (v1 text, v2 binary, malformed headers), taking a header
off a socket without touching the SSH bytes behind it, and the gateway's `use`/`require` modes."""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
import socket
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from gateway.ssh.listener import is_trusted, networks, read_proxy_header
from gateway.ssh.proxyproto import V1_MAX, V2_MAX, ProxyHeaderError, classify, header_length, parse
from testbed import SOURCE_ROOT
from testbed.proxyhead import build_v1, build_v2
from tests.helpers import recorded_events, register_account

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
LIST_CLASSIFIERS = b"GET /legacy/?:action=list_classifiers HTTP/1.0\r\nHost: gateway\r\n\r\n"


# -- the parser -------------------------------------------------------------------------------
def test_v1_tcp4():
    """A v1 TCP4 line gives the client's address and port."""
    header = parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 22\r\n")
    assert (header.version, header.family, header.source, header.destination) == (
        1, "TCP4", ("192.0.2.7", 56324), ("198.51.100.1", 22))
    assert header.client == ("192.0.2.7", 56324)


def test_v1_tcp6_and_unknown():
    """v1 TCP6 is parsed; UNKNOWN (with or without addresses) keeps the socket's own peer."""
    assert parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 22\r\n").client == ("2001:db8::1", 4000)
    assert parse(b"PROXY UNKNOWN\r\n").client is None
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").client is None


@pytest.mark.parametrize("line, problem", [
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n", "needs"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 056324 22\r\n", "port"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 22\r\n", "port"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 -1 22\r\n", "port"),
    (b"PROXY TCP4 2001:db8::1 198.51.100.1 1 22\r\n", "IPv4"),
    (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 22\r\n", "IPv6"),
    (b"PROXY TCP4 host.example 198.51.100.1 1 22\r\n", "not an IP"),
    (b"PROXY UDP4 192.0.2.7 198.51.100.1 1 22\r\n", "family"),
    (b"PROXY TCP4 192.0.2.\xff 198.51.100.1 1 22\r\n", "ASCII"),
])
def test_v1_malformed(line, problem):
    """Malformed v1 lines are refused, saying what is wrong."""
    with pytest.raises(ProxyHeaderError, match=problem):
        parse(line)


def test_v1_without_crlf_is_refused_at_107_bytes():
    """A v1 line with no CR LF within 107 bytes, or ending in a bare LF, is refused."""
    assert header_length(b"PROXY TCP4 " + b"1" * 50) is None  # could still end in time
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        header_length(b"PROXY TCP4 " + b"1" * 200)
    with pytest.raises(ProxyHeaderError, match="CR LF"):
        header_length(b"PROXY UNKNOWN\nSSH-2.0-x")


def test_v2_tcp4_tcp6_local_unspec():
    """v2 headers: TCP4 and TCP6 addresses, LOCAL and unspecified families keep the real peer."""
    four = parse(build_v2(("192.0.2.7", 40000), ("198.51.100.1", 22)))
    assert (four.version, four.command, four.family, four.client) == (2, "PROXY", "TCP4", ("192.0.2.7", 40000))
    six = parse(build_v2(("2001:db8::7", 40001)))
    assert six.family == "TCP6" and six.client == ("2001:db8::7", 40001)
    local = parse(build_v2(None, local=True))
    assert local.command == "LOCAL" and local.client is None
    assert parse(build_v2(None)).client is None


def test_v2_tlvs_are_part_of_the_header():
    """TLVs after the addresses count in the header's length and are skipped."""
    tlv = bytes([0x04]) + struct.pack("!H", 3) + b"abc"  # PP2_TYPE_NOOP
    data = build_v2(("192.0.2.7", 1), tlvs=tlv)
    assert header_length(data + SSH_BANNER) == len(data)
    assert parse(data).client == ("192.0.2.7", 1)


@pytest.mark.parametrize("mutate, problem", [
    (lambda h: h[:12] + bytes([0x11]) + h[13:], "version 1"),
    (lambda h: h[:12] + bytes([0x2F]) + h[13:], "command"),
    (lambda h: h[:14] + struct.pack("!H", 4) + h[16:20], "need 12 bytes"),
    (lambda h: h[:14] + struct.pack("!H", 60000) + h[16:], "larger than"),
])
def test_v2_malformed(mutate, problem):
    """Malformed v2 headers (version, command, short address block, oversized) are refused."""
    with pytest.raises(ProxyHeaderError, match=problem):
        data = mutate(build_v2(("192.0.2.7", 1)))
        parse(data[:header_length(data)])


def test_classify_tells_ssh_from_headers_early():
    """An SSH banner is 'none' from its first byte; a header's first bytes ask for more."""
    assert classify(b"S") == "none"
    assert classify(SSH_BANNER) == "none"
    assert classify(b"") == "more"
    assert classify(b"PROX") == "more"
    assert classify(b"\r\n\r\n\x00") == "more"
    assert classify(b"\r\n\r\n\x01") == "none"
    assert classify(build_v1(("192.0.2.1", 1))) == "v1"
    assert classify(build_v2(("192.0.2.1", 1))) == "v2"


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))


@given(source=addresses, port=st.integers(0, 65535), dport=st.integers(0, 65535))
def test_built_headers_parse_back(source, port, dport):
    """Any address and port survives build and parse, in both versions."""
    destination = ("::1" if ":" in source else "127.0.0.1", dport)
    for header in (build_v1((source, port), destination), build_v2((source, port), destination)):
        parsed = parse(header)
        assert parsed.client == (str(ipaddress.ip_address(source)), port)
        assert parsed.destination == destination


@given(st.binary(max_size=300))
def test_parser_never_fails_other_than_with_its_error(data):
    """Arbitrary bytes: a header length, None, or ProxyHeaderError; never another exception. A
    length found is within the protocol's bounds, and a parsed header is exactly that long."""
    try:
        total = header_length(data)
        if total is None:
            assert classify(data) != "none", "plain bytes need no more input to be told apart"
            return
        assert total <= max(V1_MAX, V2_MAX)
        if len(data) >= total:
            header = parse(data[:total])
            assert header.length == total and header.version in (1, 2)
    except ProxyHeaderError as exc:
        assert str(exc) and str(exc).isprintable()


def test_trusted_networks():
    """proxy_allowed: CIDR membership, IPv4-mapped IPv6 peers included."""
    allowed = networks(["10.0.0.0/8", "2001:db8::/32"])
    assert is_trusted("10.1.2.3", allowed)
    assert is_trusted("::ffff:10.1.2.3", allowed)
    assert is_trusted("2001:db8::5", allowed)
    assert not is_trusted("192.0.2.1", allowed)
    assert not is_trusted("not-an-address", allowed)


# -- off the socket, byte-exactly -------------------------------------------------------------
@pytest.mark.parametrize("header", [build_v1(("192.0.2.7", 5000)), build_v2(("2001:db8::9", 5001)), b""],
                         ids=["v1", "v2", "none"])
@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_read_header_leaves_the_ssh_bytes(header, chunk):
    """However the bytes arrive, exactly the header is consumed and the SSH banner stays unread."""

    async def scenario():
        server, client = socket.socketpair()
        server.setblocking(False)
        data = header + SSH_BANNER

        async def feed():
            for start in range(0, len(data), chunk):
                client.send(data[start:start + chunk])
                await asyncio.sleep(0.001)

        feeding = asyncio.get_running_loop().create_task(feed())
        found = await asyncio.wait_for(read_proxy_header(server), 5)
        await feeding
        rest = b""
        while len(rest) < len(SSH_BANNER):
            await asyncio.sleep(0.001)
            try:
                rest += server.recv(4096)
            except BlockingIOError:
                pass
        server.close()
        client.close()
        return found, rest

    found, rest = asyncio.run(scenario())
    assert rest == SSH_BANNER
    assert (found is None) == (header == b"")
    if found is not None:
        assert found.length == len(header)


# -- the gateway's modes ----------------------------------------------------------------------
def run_via(client, extra: list[str], data: bytes = b"", *command: str):
    """One session of the real OpenSSH client with extra options (e.g. a ProxyCommand)."""
    return subprocess.run([*client.argv(*extra, "-T", "-l", client.user), "127.0.0.1", *command],
                          input=data, capture_output=True, timeout=60)


def proxy_command(*args: str) -> list[str]:
    # testbed is not installed: the relay finds it through the source tree on its PYTHONPATH.
    program = shlex.join(["env", f"PYTHONPATH={SOURCE_ROOT}", sys.executable, "-m", "testbed.proxyhead"])
    return ["-o", f"ProxyCommand={program} %h %p {' '.join(args)}"]


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("pypissh_proxy_refused_total", {"reason": reason}) or 0.0


@pytest.fixture
def proxied_gateway(start_gateway, make_settings, user_key, upstream):
    harness = start_gateway(make_settings(proxy_protocol="require", proxy_allowed=("127.0.0.1/32",)))
    register_account(harness, "alice", user_key, token=upstream.token)
    return harness


@pytest.mark.parametrize("version", [[], ["--v1"]], ids=["v2", "v1"])
def test_require_records_the_address_from_the_header(proxied_gateway, ssh_client, version):
    """proxy_protocol=require: the client address in the event is the header's, not the socket's."""
    client = ssh_client(harness=proxied_gateway)
    result = run_via(client, proxy_command("--source", "203.0.113.9:40000", *version), LIST_CLASSIFIERS)
    assert result.returncode == 0, result.stderr
    assert b"200 OK" in result.stdout
    (event,) = recorded_events(proxied_gateway.registry, account_name="alice")
    assert event.client_addr == "203.0.113.9"


def test_require_refuses_a_plain_connection(proxied_gateway, ssh_client):
    """proxy_protocol=require: a client without a PROXY header is disconnected before SSH starts."""
    before = refused("missing")
    result = ssh_client(harness=proxied_gateway).run("whoami")
    assert result.returncode == 255
    assert refused("missing") == before + 1


def test_require_refuses_a_malformed_header(proxied_gateway, ssh_client):
    """A malformed header closes the connection instead of reaching SSH."""
    before = refused("malformed")
    bad = b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n".hex()
    result = run_via(ssh_client(harness=proxied_gateway), proxy_command("--raw", bad), b"", "whoami")
    assert result.returncode == 255
    assert refused("malformed") == before + 1


def test_require_refuses_an_untrusted_balancer(start_gateway, make_settings, ssh_client):
    """A header from a peer outside proxy_allowed is not believed: the connection is refused."""
    harness = start_gateway(make_settings(proxy_protocol="require", proxy_allowed=("10.0.0.0/8",)))
    before = refused("untrusted")
    result = run_via(ssh_client(harness=harness), proxy_command("--source", "203.0.113.9:1"), b"", "whoami")
    assert result.returncode == 255
    assert refused("untrusted") == before + 1


def test_use_accepts_both(start_gateway, make_settings, ssh_client, user_key, upstream):
    """proxy_protocol=use: a header is honoured when present, a plain client works too."""
    harness = start_gateway(make_settings(proxy_protocol="use", proxy_allowed=("127.0.0.1/32",)))
    register_account(harness, "alice", user_key, token=upstream.token)
    client = ssh_client(harness=harness)
    assert run_via(client, proxy_command("--source", "198.51.100.4:1"), LIST_CLASSIFIERS).returncode == 0
    assert client.run(data=LIST_CLASSIFIERS).returncode == 0
    assert [e.client_addr for e in recorded_events(harness.registry, account_name="alice")] == ["198.51.100.4", "127.0.0.1"]

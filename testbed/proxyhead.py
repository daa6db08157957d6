"""A one-connection stand-in for a balancer, for OpenSSH's ProxyCommand: connect to the gateway,
send a PROXY header claiming another client address, then relay stdin/stdout.

    ssh -o ProxyCommand="python -m testbed.proxyhead %h %p --source 203.0.113.9:40000" ...
    ssh -o ProxyCommand="python -m testbed.proxyhead %h %p --raw '<hex bytes>'" ...

It exists because the OpenSSH client cannot send a PROXY header itself; the real HAProxy is used
where a test is about the balancer. `build_v1` and `build_v2` write headers for it and the tests.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import selectors
import socket
import struct
import sys

from gateway.ssh import proxyproto


def build_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None = None) -> bytes:
    """A v1 header line, as `send-proxy` writes it."""
    if source is None:
        return b"PROXY UNKNOWN\r\n"
    destination = destination or (("127.0.0.1" if ":" not in source[0] else "::1"), 0)
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode("ascii")


def build_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None = None, *,
             local: bool = False, tlvs: bytes = b"") -> bytes:
    """A v2 header, as `send-proxy-v2` writes it (`tlvs` appended as given)."""
    if local or source is None:
        command, family, body = (0x20 if local else 0x21), 0x00, b""
    else:
        six = ":" in source[0]
        destination = destination or (("::1" if six else "127.0.0.1"), 0)
        family = 0x21 if six else 0x11
        body = (ipaddress.ip_address(source[0]).packed + ipaddress.ip_address(destination[0]).packed
                + struct.pack("!HH", source[1], destination[1]))
        command = 0x21
    body += tlvs
    return proxyproto.V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def relay(sock: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    selector.register(stdin, selectors.EVENT_READ, "in")
    selector.register(sock, selectors.EVENT_READ, "sock")
    open_inputs = 2
    while open_inputs:
        for key, _ in selector.select():
            if key.data == "in":
                data = os.read(stdin, 65536)
                if data:
                    sock.sendall(data)
                else:
                    selector.unregister(stdin)
                    sock.shutdown(socket.SHUT_WR)
                    open_inputs -= 1
            else:
                data = sock.recv(65536)
                if data:
                    os.write(stdout, data)
                else:
                    return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.proxyhead")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--source", help="client address to claim, HOST:PORT (default: PROXY UNKNOWN)")
    parser.add_argument("--v1", action="store_true", help="send the text header (default: binary v2)")
    parser.add_argument("--raw", help="send these bytes (hex) instead of a well-formed header")
    args = parser.parse_args(argv)
    if args.raw is not None:
        header = bytes.fromhex(args.raw)
    else:
        source = parse_address(args.source) if args.source else None
        header = build_v1(source) if args.v1 else build_v2(source)
    with socket.create_connection((args.host, args.port), timeout=10) as sock:
        sock.settimeout(None)
        sock.sendall(header)
        relay(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())

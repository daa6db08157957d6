"""A throwaway certificate authority and a server certificate for local TLS, made with trustme.

The test upstream must speak real, verified TLS (the gateway never turns verification off), so
the testbed makes its own CA and a certificate valid for the loopback names `127.0.0.1`, `::1`
and `localhost`. Calling `make_tls()` again into another directory gives a second, unrelated CA,
which is what "untrusted certificate" tests need.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import trustme

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one throwaway CA and the server certificate it signed."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    hosts: tuple[str, ...] = DEFAULT_HOSTS

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for clients that trusts only this CA (hostname checks on)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        return context


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def make_tls(directory: Path, *, hosts: Iterable[str] = DEFAULT_HOSTS) -> TlsFiles:
    """Create a new CA and a server certificate for `hosts`, written as PEM into `directory`.

    Every call makes fresh keys, so two calls give two CAs that do not trust each other.
    Files: ca.pem, ca-key.pem, server.pem, server-key.pem.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hosts = tuple(hosts)
    ca = trustme.CA(organization_name="pypissh-gateway testbed")
    server = ca.issue_cert(*hosts, organization_name="pypissh-gateway testbed")
    files = TlsFiles(ca_cert=directory / "ca.pem", ca_key=directory / "ca-key.pem",
                     server_cert=directory / "server.pem", server_key=directory / "server-key.pem", hosts=hosts)
    ca.cert_pem.write_to_path(str(files.ca_cert))
    _write_private(files.ca_key, ca.private_key_pem.bytes())
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    _write_private(files.server_key, server.private_key_pem.bytes())
    return files

"""Logins under a flood of connections that never log in.

A real `pypissh-gateway serve` process with the default limits; for each flood size, that many
TCP connections from other loopback addresses (some silent, some sending a banner, some a banner
and junk) are held open while a real OpenSSH client logs in and runs `whoami` several times. Prints
the login times and the gateway's RSS.

    python bench/flood.py [--sizes 0,300,1000] [--logins 10]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.registry import Registry  # noqa: E402
from gateway.registry.migrate_db import upgrade  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.ssh import hostkeys  # noqa: E402
from gateway.sshkeys import parse_public_key  # noqa: E402
from gateway.tokens import create_key_file  # noqa: E402
from testbed.gatewayprocess import GatewayProcess  # noqa: E402


def flood(port: int, size: int) -> list[socket.socket]:
    held = []
    for index in range(size):
        sock = socket.socket()
        try:
            sock.bind((f"127.0.{2 + index // 250}.{index % 250 + 1}", 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall((b"", b"SSH-2.0-flood\r\n", b"SSH-2.0-flood\r\n" + bytes(range(256)))[index % 3])
            held.append(sock)
        except OSError:
            sock.close()
    return held


def login(port: int, key: Path, known: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        ["ssh", "-p", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "LogLevel=ERROR", "-T", "-l", "submit", "127.0.0.1", "whoami"],
        capture_output=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,300,1000")
    parser.add_argument("--logins", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    hostkeys.generate(work / "keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "user")], check=True)
    settings = Settings(database_url=f"sqlite:///{work / 'registry.sqlite3'}", host_key_dir=str(work / "keys"),
                        secret_key_file=str(work / "secret.key"), upstream_url="https://127.0.0.1:9/legacy/")
    upgrade(settings.database_url)  # what `keygen` and `db upgrade` make
    create_key_file(work / "secret.key")
    registry = Registry.from_url(settings.database_url)
    registry.accounts.add_account("alice")
    registry.keys.add_key("alice", parse_public_key((work / "user.pub").read_text()))
    with GatewayProcess(settings, work / "gateway.log") as gateway:
        known = work / "known_hosts"
        known.write_text(gateway.known_hosts_line())
        print(f"{'idle connections':>16}  {'login median':>12}  {'login max':>9}  {'gateway RSS':>11}")
        for size in (int(part) for part in args.sizes.split(",")):
            held = flood(gateway.port, size)
            time.sleep(0.5)
            times = [login(gateway.port, work / "user", known) for _ in range(args.logins)]
            print(f"{len(held):>16}  {statistics.median(times) * 1000:>10.0f}ms  {max(times) * 1000:>7.0f}ms  "
                  f"{gateway.rss_kib() / 1024:>9.1f}MiB")
            for sock in held:
                sock.close()
            time.sleep(1.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""known_hosts lines for the SSH clients the demo, the tests and the benchmarks point at a gateway."""

from __future__ import annotations

import os
from pathlib import Path


def known_hosts_lines(directory: str | os.PathLike[str], port: int, host: str = "127.0.0.1") -> str:
    """known_hosts lines for clients of a gateway on `host:port` with the keys in `directory`."""
    lines = []
    for pub in sorted(Path(directory).glob("ssh_host_*_key.pub")):
        kind, data = pub.read_text().split()[:2]
        lines.append(f"[{host}]:{port} {kind} {data}\n")
    return "".join(lines)

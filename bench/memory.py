"""Memory of one replica: peak RSS while it forwards a 1 GiB upload, and the cost of idle sessions.

1. Peak RSS (the kernel's high-water mark, VmHWM, reset just before) of `pypissh-gateway serve`
   while the legacy client sends a 1 GiB upload that the gateway spools and forwards to the
   upstream (`max_upload_bytes` raised). Goal: at most 50 MiB over the idle RSS.
2. 500 concurrent idle authenticated sessions: asyncssh client connections in this process, each
   authenticated with its account's key and with a session channel open on which the gateway waits
   for the request. Goal: under 100 KiB of RSS each.

    python bench/memory.py [--quick] [--gib 1] [--sessions 500]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncssh  # noqa: E402

from _setup import (  # noqa: E402
    BenchEnv,
    answered_200,
    machine,
    note,
    print_machine,
    print_table,
    ssh_argv,
    write_large_request,
)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def settle_rss(pid: int, seconds: float = 1.0) -> int:
    """RSS once it stops moving (after a burst of work, freed memory is given back lazily)."""
    last = status_kib(pid, "VmRSS")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = status_kib(pid, "VmRSS")
        if abs(now - last) < 64:
            return now
        last = now
    return last


def big_upload(env: BenchEnv, gib: float) -> list[list[str]]:
    (account,) = env.add_accounts(1, prefix="big")
    size = int(gib * 2**30)
    gateway = env.start_gateway("gateway-big", max_upload_bytes=size + 2**20, read_timeout=120.0,
                                upstream_timeout=900.0)
    folder = env.workdir / "files"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    upload = write_large_request(folder / "big.request", size - 64 * 1024)
    pid = gateway.pid
    # Warm up: one small upload, so imports, pools and caches made on first use count as idle.
    small = write_large_request(folder / "small.request", 256 * 1024)
    with open(small.request, "rb") as handle:
        subprocess.run(ssh_argv(gateway, account), stdin=handle, capture_output=True, timeout=120, check=True)
    idle = settle_rss(pid)
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    started = time.monotonic()
    samples = []
    with open(upload.request, "rb") as handle:
        proc = subprocess.Popen(ssh_argv(gateway, account), stdin=handle, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        while proc.poll() is None:
            samples.append(status_kib(pid, "VmRSS"))
            time.sleep(0.1)
        out, err = proc.communicate()
    seconds = time.monotonic() - started
    peak = status_kib(pid, "VmHWM")
    if not answered_200(out):
        note(f"the 1 GiB upload failed: {(out[:200] + err[-300:]).decode('latin-1')}")
    upload.request.unlink()
    upload.sdist.unlink()
    env.clear_upstream()
    growth = (peak - idle) / 1024
    return [["idle RSS (after one warm-up upload)", f"{idle / 1024:.1f} MiB", ""],
            [f"peak RSS during a {gib:g} GiB upload ({seconds:.0f} s, answered "
             f"{out[:15].decode('latin-1', 'replace').strip()!r})", f"{peak / 1024:.1f} MiB", ""],
            ["growth over idle", f"{growth:.1f} MiB", "met (<= 50 MiB)" if growth <= 50 else "MISSED (<= 50 MiB)"]]


async def open_idle_sessions(port: int, keys: list[Path], count: int, known_hosts: Path,
                             parallel: int = 16) -> tuple[list, list]:
    connections: list[asyncssh.SSHClientConnection] = []
    channels: list = []
    semaphore = asyncio.Semaphore(parallel)

    async def one(index: int) -> None:
        async with semaphore:
            conn = await asyncssh.connect(
                "127.0.0.1", port, username="submit", client_keys=[str(keys[index % len(keys)])],
                known_hosts=str(known_hosts), config=None, agent_path=None)
            # A session channel with no command: the gateway starts the exchange and waits for the
            # request (read_timeout is raised so it keeps waiting).
            chan, _session = await conn.create_session(asyncssh.SSHClientSession, encoding=None)
            connections.append(conn)
            channels.append(chan)

    await asyncio.gather(*(one(i) for i in range(count)))
    return connections, channels


def idle_sessions(env: BenchEnv, count: int) -> list[list[str]]:
    accounts = env.add_accounts(20, prefix="idle")
    gateway = env.start_gateway("gateway-idle", read_timeout=600.0, login_timeout=600.0)
    pid = gateway.pid
    keys = [account.key_path for account in accounts]

    async def run() -> list[list[str]]:
        warm, warm_channels = await open_idle_sessions(gateway.port, keys, 20, gateway.known_hosts)
        for conn in warm:
            conn.close()
        await asyncio.sleep(1.0)
        before = settle_rss(pid)
        started = time.monotonic()
        connections, channels = await open_idle_sessions(gateway.port, keys, count, gateway.known_hosts)
        opened = time.monotonic() - started
        await asyncio.sleep(1.0)
        after = settle_rss(pid)
        per = (after - before) / max(1, len(connections))
        for conn in connections:
            conn.close()
        for conn in connections:
            await conn.wait_closed()
        return [["RSS before (after 20 warm-up sessions closed)", f"{before / 1024:.1f} MiB", ""],
                [f"RSS with {len(connections)} idle authenticated sessions (opened in {opened:.0f} s)",
                 f"{after / 1024:.1f} MiB", ""],
                ["cost per session", f"{per:.0f} KiB", "met (< 100 KiB)" if per < 100 else "MISSED (< 100 KiB)"]]

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 256 MiB upload and 100 sessions")
    parser.add_argument("--gib", type=float, default=None, help="upload size in GiB (default 1)")
    parser.add_argument("--sessions", type=int, default=None, help="idle sessions (default 500)")
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    args = parser.parse_args()
    gib = args.gib or (0.25 if args.quick else 1.0)
    sessions = args.sessions or (100 if args.quick else 500)
    print_machine(machine())
    with BenchEnv("memory", db=args.db) as env:
        rows = big_upload(env, gib)
        print_table("Peak RSS while forwarding a large upload", ["measure", "value", "goal"], rows)
        rows = idle_sessions(env, sessions)
        print_table("Idle authenticated sessions", ["measure", "value", "goal"], rows)


if __name__ == "__main__":
    main()

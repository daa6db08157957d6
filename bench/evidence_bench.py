"""How long `pypissh-migrate evidence refresh` takes for 2,000 projects, and how many requests it
makes per project.

Seeds a registry with 1,000 accounts that uploaded 2,000 projects over SSH (one forwarded upload
of version 1.0 each, 30 days before a fixed date), writes every project's files into a package
folder (the gateway's 1.0 and, for three projects in four, a 1.1 sdist and wheel made another way,
dated 20 days later), serves that folder over TLS as PEP 691 JSON pages with upload times
(`testbed.json_index`, in this process) and runs `pypissh-migrate evidence refresh --format json`
in a fresh process, as an admin would, at each --concurrency: a first run that records the new
files, then a second that finds nothing new. Then the same with --latency milliseconds added to
every answer, as a distant index's round trip would, which is what the threads are for. The report then counts the migrated accounts,
checked against what the seeding implies. With --pypiserver the same folder is also read through
the testbed's TLS pypiserver (PEP 503 HTML): its pages carry no upload times, so a first refresh
is a baseline and no account counts as migrated yet.

    python bench/evidence_bench.py [--projects N] [--concurrency 1,8,32] [--latency MS] [--db sqlite|postgresql]
                                   [--pypiserver]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bench._setup import machine, note, print_machine, print_table  # noqa: E402
from gateway.registry import Registry  # noqa: E402
from gateway.registry.migrate_db import upgrade  # noqa: E402
from gateway.registry.schema import accounts, upload_events  # noqa: E402
from testbed import postgres, source_tree_environment  # noqa: E402
from testbed.clock import command_at  # noqa: E402
from testbed.json_index import JsonIndex  # noqa: E402
from testbed.tlsca import make_tls  # noqa: E402
from testbed.upstream import TlsPypiServer  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 2, tzinfo=UTC)
UPLOADED = NOW - dt.timedelta(days=30)  # the SSH uploads
RELEASED = NOW - dt.timedelta(days=10)  # the releases made another way


def project_name(number: int) -> str:
    return f"bench-project-{number:05d}"


def released_another_way(number: int) -> bool:
    return number % 4 != 3


def write_packages(folder: Path, projects: int) -> dict[int, tuple[str, str]]:
    """The index's files; returns, per project, the gateway's file name and sha256."""
    rng = random.Random(15)
    folder.mkdir(parents=True, exist_ok=True)
    ours = {}
    for number in range(1, projects + 1):
        stem = project_name(number).replace("-", "_")
        content = rng.randbytes(1024)
        path = folder / f"{stem}-1.0.tar.gz"
        path.write_bytes(content)
        os.utime(path, (UPLOADED.timestamp(), UPLOADED.timestamp()))
        ours[number] = (path.name, hashlib.sha256(content).hexdigest())
        if released_another_way(number):
            for name in (f"{stem}-1.1.tar.gz", f"{stem}-1.1-py3-none-any.whl"):
                (folder / name).write_bytes(rng.randbytes(1024))
                os.utime(folder / name, (RELEASED.timestamp(), RELEASED.timestamp()))
    return ours


def seed_registry(url: str, ours: dict[int, tuple[str, str]]) -> int:
    """Two projects per account, one forwarded upload each; returns the accounts that migrated."""
    upgrade(url)
    registry = Registry.from_url(url)
    owners = {number: (number + 1) // 2 for number in ours}
    with registry.engine.begin() as conn:
        conn.execute(insert(accounts), [dict(id=a, name=f"user{a:05d}", email=f"user{a:05d}@example.org",
                                             disabled=False, exempt=False, created_at=UPLOADED)
                                        for a in sorted(set(owners.values()))])
        conn.execute(insert(upload_events), [
            dict(at=UPLOADED + dt.timedelta(seconds=number), outcome="forwarded", account_id=owners[number],
                 account_name=f"user{owners[number]:05d}", action="file_upload", project=project_name(number),
                 version="1.0", filename=filename, sha256=sha256, legacy_crypto=False)
            for number, (filename, sha256) in ours.items()])
    registry.engine.dispose()
    migrated = {a for a in owners.values()}
    for number, account in owners.items():
        if not released_another_way(number):
            migrated.discard(account)
    return len(migrated)


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with postgres.temporary_database("evidence_bench") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'registry.sqlite3'}"


def migrate_cli(url: str, index_url: str, ca: Path, *args: str,
                pinned: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    """One `pypissh-migrate` process and its wall time (`pinned`: with `now` set to NOW)."""
    program = command_at(NOW) if pinned else [sys.executable, "-m", "migrate"]
    command = [*program, "--set", f"database_url={url}", "--set", f"index_url={index_url}",
               "--set", f"upstream_ca_bundle={ca}", *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=source_tree_environment(), cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stdout[-1000:]}{done.stderr[-2000:]}")
    return elapsed, done


def run_refreshes(kind: str, ours: dict[int, tuple[str, str]], index_url: str, ca: Path, concurrency: int,
                  requests_seen: Callable[[], tuple[int, int]]) -> dict:
    with database(kind) as url:
        expected = seed_registry(url, ours)
        counts = []
        runs = []
        for _ in range(2):
            before = requests_seen()
            elapsed, done = migrate_cli(url, index_url, ca, "evidence", "refresh", "--concurrency", str(concurrency),
                                        "--format", "json")
            after = requests_seen()
            counts.append((after[0] - before[0], after[1] - before[1]))
            runs.append((elapsed, json.loads(done.stdout)))
        _, report = migrate_cli(url, index_url, ca, "report", "--since", "90d", "--format", "json", pinned=True)
        migrated = json.loads(report.stdout)["summary"]["status_migrated"]
    projects = len(ours)
    rows = []
    for label, (elapsed, summary), (requests, connections) in zip(("first", "second"), runs, counts):
        inside = (dt.datetime.fromisoformat(summary["finished_at"].replace("Z", "+00:00"))
                  - dt.datetime.fromisoformat(summary["started_at"].replace("Z", "+00:00")))
        rows.append(dict(run=label, concurrency=concurrency, wall=elapsed, inside=inside.total_seconds(),
                         read=summary["projects_read"], recorded=summary["files_recorded"],
                         failed=summary["failed"], requests=requests / projects,
                         connections=connections, migrated=migrated, expected=expected))
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated thread counts")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--latency", type=int, default=50, metavar="MS",
                        help="also run with this delay added to every page, as a distant index's round trip (0: not)")
    parser.add_argument("--pypiserver", action="store_true", help="also read the folder through pypiserver (HTML)")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    if args.db == "postgresql" and postgres.unavailable_reason():
        raise SystemExit(postgres.unavailable_reason())
    print_machine(machine())
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        tls = make_tls(work / "tls")
        ours = write_packages(work / "upstream" / "packages", args.projects)
        note(f"{args.projects} projects, {len(list((work / 'upstream' / 'packages').iterdir()))} files; "
             f"registry on {args.db}; `now` pinned to {NOW:%Y-%m-%d}")
        for latency in sorted({0, args.latency}):
            label = "JSON stand-in" + (f", +{latency} ms a page" if latency else "")
            with JsonIndex(work / "upstream" / "packages", tls, latency=latency / 1000) as index:
                for level in levels:
                    result = run_refreshes(args.db, ours, index.url, tls.ca_cert, level,
                                           lambda: (index.requests, index.connections))
                    rows += [(label, r) for r in result["rows"]]
        if args.pypiserver:
            with TlsPypiServer(work / "upstream", ca=tls) as server:
                for level in levels:
                    result = run_refreshes(args.db, ours, server.simple_url, tls.ca_cert, level,
                                           lambda: (len(server.recordings()), 0))
                    rows += [("pypiserver (HTML)", r) for r in result["rows"]]
    print_table(
        f"evidence refresh of {args.projects} projects (registry: {args.db})",
        ["index", "run", "threads", "wall time (fresh process)", "inside the refresh", "pages/s", "requests/project",
         "TLS connections", "read", "files recorded", "failed", "migrated accounts (expected)"],
        [(index, r["run"], r["concurrency"], f"{r['wall']:.1f} s", f"{r['inside']:.1f} s",
          f"{r['read'] / r['inside']:.0f}" if r["inside"] else "-", f"{r['requests']:.2f}",
          r["connections"] or "-", r["read"], r["recorded"], r["failed"], f"{r['migrated']} ({r['expected']})")
         for index, r in rows])
    load = os.getloadavg()
    note(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

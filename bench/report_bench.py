"""How long `pypissh-migrate report` takes over a large history, on SQLite and on PostgreSQL.

Seeds a registry with accounts, keys, a schedule, a notification campaign, (by default) one
million upload events spread over the 12 weeks before a fixed date and, for a share of the
projects (--evidence), a release on the index made another way in the last days, then times
`pypissh-migrate report --format json` run as a user would run it (a fresh process) and prints the
figures. SQLite uses a file in a temporary folder; PostgreSQL a database created and dropped on
the local server (127.0.0.1:5432, user postgres).

    python bench/report_bench.py [--events N] [--accounts N] [--evidence SHARE] [--only sqlite|postgresql]
                                 [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.registry import Registry  # noqa: E402
from gateway.registry.migrate_db import upgrade  # noqa: E402
from gateway.registry.schema import accounts, index_files, index_projects, notification_sends, ssh_keys  # noqa: E402
from testbed import postgres  # noqa: E402

UTC = dt.timezone.utc
UNTIL = dt.datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; the report covers the 90 days before it
SPAN = dt.timedelta(weeks=12)

OUTCOMES = [  # (outcome, weight): roughly what a dying SSH path looks like
    ("forwarded", 70), ("refused_upstream", 8), ("refused_schedule", 5), ("bad_request", 5),
    ("client_aborted", 4), ("upstream_error", 3), ("local", 3), ("no_credential", 1), ("internal_error", 1),
]
SSH_CLIENTS = ["SSH-2.0-OpenSSH_5.3", "SSH-2.0-OpenSSH_7.4", "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5",
               "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", "SSH-2.0-PuTTY_Release_0.70", "SSH-2.0-paramiko_2.4.2"]
USER_AGENTS = ["Python-urllib/2.7", "Python-urllib/2.6", "Python-urllib/3.6", "Python-urllib/3.11", None]
EVENT_COLUMNS = ["at", "account_id", "account_name", "key_fingerprint", "client_addr", "ssh_client_version",
                 "user_agent", "action", "project", "version", "filename", "size", "sha256",
                 "upstream_status", "outcome", "duration_ms", "error", "legacy_crypto", "replica"]


@dataclass
class Person:
    id: int
    name: str
    fingerprints: list[str]
    projects: list[str]
    clients: list[tuple[str, str | None]]


def seed_people(registry: Registry, count: int, rng: random.Random) -> list[Person]:
    """Accounts with one or two keys, a few projects and one or two client setups each."""
    now = UNTIL - SPAN - dt.timedelta(days=30)
    people = []
    account_rows, key_rows = [], []
    for number in range(1, count + 1):
        name = f"user{number:05d}"
        fingerprints = [f"SHA256:bench{number:05d}k{k}" for k in range(rng.choice((1, 1, 1, 2)))]
        projects = [f"project-{rng.randrange(count * 3):05d}" for _ in range(rng.choice((1, 1, 2, 3)))]
        clients = [(rng.choice(SSH_CLIENTS), rng.choice(USER_AGENTS)) for _ in range(rng.choice((1, 2)))]
        people.append(Person(number, name, fingerprints, projects, clients))
        account_rows.append(dict(id=number, name=name, email=f"{name}@example.org", disabled=False,
                                 exempt=number % 50 == 0, created_at=now))
        for fingerprint in fingerprints:
            weak = rng.random() < 0.1
            key_rows.append(dict(account_id=number, fingerprint=fingerprint,
                                 algorithm="ssh-rsa" if weak else "ssh-ed25519", bits=1024 if weak else 256,
                                 public_key="ssh-ed25519 AAAA", weak=weak, source="import", created_at=now))
    with registry.engine.begin() as conn:
        conn.execute(insert(accounts), account_rows)
        conn.execute(insert(ssh_keys), key_rows)
    return people


def seed_schedule(registry: Registry, people: list[Person], rng: random.Random) -> None:
    start = UNTIL - SPAN
    registry.schedule.add_window("notice", start + dt.timedelta(days=14), note="bench notice")
    for day in (42, 63):
        begin = start + dt.timedelta(days=day, hours=10)
        registry.schedule.add_window("brownout", begin, begin + dt.timedelta(hours=6))
    registry.schedule.add_window("sunset", UNTIL + dt.timedelta(days=30))
    sent = start + dt.timedelta(days=15)
    rows = [dict(campaign="first-notice", account_id=p.id, email=f"{p.name}@example.org",
                 status="sent" if rng.random() < 0.9 else "failed", created_at=sent, sent_at=sent)
            for p in people if rng.random() < 0.8]
    with registry.engine.begin() as conn:
        conn.execute(insert(notification_sends), rows)


def seed_evidence(registry: Registry, people: list[Person], share: float, rng: random.Random) -> None:
    """What `evidence refresh` would have recorded: a release made another way, dated in the last
    days of the period, for `share` of the projects."""
    projects = sorted({p for person in people for p in person.projects})
    chosen = [p for p in projects if rng.random() < share]
    read = UNTIL - dt.timedelta(days=1)
    with registry.engine.begin() as conn:
        if chosen:
            conn.execute(insert(index_projects), [dict(project=p, first_read_at=read, last_read_at=read)
                                                  for p in chosen])
            conn.execute(insert(index_files), [
                dict(project=p, filename=f"{p.replace('-', '_')}-2.0.tar.gz", sha256="2" * 64,
                     upload_time=UNTIL - dt.timedelta(hours=rng.randrange(1, 72)), first_seen_at=read)
                for p in chosen])


def event_rows(people: list[Person], count: int, rng: random.Random):
    """Events in time order; a few heavy users make most of them, as in real logs."""
    outcomes = [o for o, _ in OUTCOMES]
    weights = [w for _, w in OUTCOMES]
    span_us = int(SPAN.total_seconds() * 1_000_000)
    start = (UNTIL - SPAN).replace(tzinfo=None)
    offsets = sorted(rng.randrange(span_us) for _ in range(count))
    chosen_outcomes = rng.choices(outcomes, weights, k=count)
    for offset, outcome in zip(offsets, chosen_outcomes):
        person = people[min(int(rng.paretovariate(1.2)) - 1, len(people) - 1) if rng.random() < 0.5
                        else rng.randrange(len(people))]
        ssh_client, agent = rng.choice(person.clients)
        project = rng.choice(person.projects) if outcome != "bad_request" else None
        yield (start + dt.timedelta(microseconds=offset), person.id, person.name,
               rng.choice(person.fingerprints), f"192.0.2.{person.id % 250}", ssh_client, agent,
               "file_upload", project, "1.0", f"{project}-1.0.tar.gz" if project else None, 20480,
               "0" * 64, 200 if outcome == "forwarded" else None, outcome, 120, None, False, "bench")


def load_events_sqlite(registry: Registry, rows) -> None:
    """executemany in one transaction; timestamps as the text SQLAlchemy writes for SQLite."""
    raw = registry.engine.raw_connection()
    try:
        cursor = raw.cursor()
        marks = ", ".join("?" for _ in EVENT_COLUMNS)
        sql = f"INSERT INTO upload_events ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})"
        batch = []
        for row in rows:
            batch.append((row[0].strftime("%Y-%m-%d %H:%M:%S.%f"), *row[1:]))
            if len(batch) == 50_000:
                cursor.executemany(sql, batch)
                batch.clear()
        cursor.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()


def load_events_postgresql(registry: Registry, rows) -> None:
    """COPY FROM STDIN, then ANALYZE (autovacuum would do the same shortly after a bulk load)."""
    raw = registry.engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY upload_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def time_report(url: str, runs: int) -> tuple[float, float, dict]:
    """Best wall time of `pypissh-migrate report --format json` in a fresh process, and the CPU
    time (user + system) of that process (for SQLite this is all the work; on a busy machine it
    is steadier than the wall time)."""
    best = best_cpu = float("inf")
    output = {}
    env = dict(os.environ, PYPISSH_DATABASE_URL=url)
    since = (UNTIL - dt.timedelta(days=90)).date().isoformat()
    until = (UNTIL - dt.timedelta(days=1)).date().isoformat()
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "migrate", "report", "--since", since, "--until", until,
                               "--format", "json"], env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"report failed on {url.split(':')[0]}: {done.stderr.strip()[-2000:]}")
        best = min(best, elapsed)
        best_cpu = min(best_cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        output = json.loads(done.stdout)
    return best, best_cpu, output


def time_build(url: str, runs: int) -> float:
    """Best time of `build_report` alone in this process: the queries and the logic, without the
    interpreter start and imports that a fresh `pypissh-migrate` process pays."""
    from migrate.report.build import build_report
    from migrate.report.model import Period

    registry = Registry.from_url(url)
    period = Period(UNTIL - dt.timedelta(days=90), UNTIL)
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        build_report(registry, period, generated_at=UNTIL)
        best = min(best, time.perf_counter() - started)
    registry.engine.dispose()
    return best


def bench(backend: str, url: str, events: int, people_count: int, runs: int, evidence: float) -> dict:
    rng = random.Random(5)
    upgrade(url)
    registry = Registry.from_url(url)
    people = seed_people(registry, people_count, rng)
    seed_schedule(registry, people, rng)
    seed_evidence(registry, people, evidence, random.Random(15))
    started = time.perf_counter()
    rows = event_rows(people, events, rng)
    (load_events_sqlite if backend == "sqlite" else load_events_postgresql)(registry, rows)
    seeded = time.perf_counter() - started
    registry.engine.dispose()
    elapsed, cpu, report = time_report(url, runs)
    return {
        "backend": backend, "events": events, "accounts": people_count, "seed_s": seeded,
        "report_s": elapsed, "report_cpu_s": cpu, "build_s": time_build(url, runs), "sessions_reported": report["summary"]["sessions"],
        "would_break": len(report["verdict"]["would_break"]),
        "migrated": report["summary"]["status_migrated"], "mixed": report["summary"]["status_mixed_use"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3, help="report runs per backend; the best is shown")
    parser.add_argument("--evidence", type=float, default=0.25, metavar="SHARE",
                        help="share of the projects with a release made another way on the index (0: none)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    results = []
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
            results.append(bench("sqlite", url, args.events, args.accounts, args.runs, args.evidence))
    if args.only in (None, "postgresql"):
        reason = postgres.unavailable_reason()
        if reason:
            print(f"skipping PostgreSQL: {reason}", file=sys.stderr)
        else:
            with postgres.temporary_database("report_bench") as url:
                results.append(bench("postgresql", url, args.events, args.accounts, args.runs, args.evidence))
    out = Table(title=f"pypissh-migrate report over 90 days (best of {args.runs} runs)")
    for column in ("database", "events", "accounts", "seeding", "report --format json\n(fresh process)",
                   "its CPU time\n(client side)", "build_report\n(in process)", "sessions\nreported", "would\nbreak",
                   "migrated /\nmixed use"):
        out.add_column(column, justify="left" if column == "database" else "right", no_wrap=column == "database")
    for r in results:
        out.add_row(r["backend"], f"{r['events']:,}", f"{r['accounts']:,}", f"{r['seed_s']:.1f} s",
                    f"{r['report_s']:.2f} s", f"{r['report_cpu_s']:.2f} s", f"{r['build_s']:.2f} s",
                    f"{r['sessions_reported']:,}",
                    str(r["would_break"]), f"{r['migrated']} / {r['mixed']}")
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(out)
    load = os.getloadavg()
    console.print(f"{os.cpu_count()} CPUs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end "
                  "(other work on the machine slows every figure)")


if __name__ == "__main__":
    main()

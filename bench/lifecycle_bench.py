"""What the deprecation lifecycle costs: notice rendering per session and campaign throughput.

1. The notice work each upload session and each connection adds on the event loop: building the
   notice and rendering the stderr text and reply headers (per session) or the login banner (per
   connection), first rendering and cached.
2. `pypissh-migrate notify` end to end (a fresh process, as an admin runs it) against a local
   aiosmtpd server, on a SQLite registry with N accounts: messages per second including the
   claim before and the record after each message.

    python bench/lifecycle_bench.py [--accounts N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from gateway.lifecycle import notices
from gateway.lifecycle.schedule import Schedule, Window
from gateway.registry import Identity, Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parent.parent


def bench_notices(rounds: int = 5000) -> None:
    schedule = Schedule.from_windows([
        Window(1, "notice", dt.datetime(2026, 8, 1, tzinfo=UTC)),
        Window(2, "brownout", dt.datetime(2026, 10, 1, 14, tzinfo=UTC), dt.datetime(2026, 10, 1, 16, tzinfo=UTC)),
        Window(3, "sunset", dt.datetime(2026, 12, 1, 14, tzinfo=UTC)),
    ])
    settings = Settings()
    now = dt.datetime(2026, 9, 1, tzinfo=UTC)

    def identity(i: int) -> Identity:
        return Identity(i, f"user{i}", None, False, f"SHA256:{i:043d}", None, None, None)

    start = time.perf_counter()
    for i in range(rounds):  # every session a different account and project: no cache hits
        notice = notices.build_notice(settings, schedule, now, identity=identity(i), project=f"p{i}")
        notices.session_text(notice)
        notices.header_lines(notice)
    cold = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for i in range(rounds):  # the same account again, a second later
        notice = notices.build_notice(settings, schedule, now + dt.timedelta(seconds=i), identity=identity(1),
                                      project="p1")
        notices.session_text(notice)
        notices.header_lines(notice)
    warm = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for i in range(rounds):
        notices.banner_text(notices.build_notice(settings, schedule, now + dt.timedelta(seconds=i)))
    banner = (time.perf_counter() - start) / rounds
    print(f"session notice + headers: {cold * 1e6:.0f} us first render, {warm * 1e6:.0f} us cached")
    print(f"login banner:             {banner * 1e6:.0f} us (cached after the first connection)")


class Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def bench_notify(accounts: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.sqlite3"
        upgrade(url)
        registry = Registry.from_url(url)
        for i in range(accounts):
            registry.accounts.add_account(f"user{i:05d}", email=f"user{i}@example.org")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        sink = Sink()
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "migrate", "--set", f"database_url={url}", "--set",
                            f"smtp_url=smtp://127.0.0.1:{port}", "notify", "--campaign", "announce", "--all"],
                           cwd=ROOT, check=True, capture_output=True)
            elapsed = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "migrate", "--set", f"database_url={url}", "--set",
                            f"smtp_url=smtp://127.0.0.1:{port}", "notify", "--campaign", "announce", "--all"],
                           cwd=ROOT, check=True, capture_output=True)
            rerun = time.perf_counter() - start
        finally:
            controller.stop()
        print(f"notify: {sink.count} messages in {elapsed:.1f} s ({sink.count / elapsed:.0f}/s, process start "
              f"included); re-run sending nothing: {rerun:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=500)
    args = parser.parse_args()
    bench_notices()
    bench_notify(args.accounts)


if __name__ == "__main__":
    main()

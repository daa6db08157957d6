"""Key registry size: login rate with 10, 10,000 and 100,000 registered keys.

Three registries (databases) of those sizes, each behind its own `pypissh-gateway serve`; real
`ssh ... whoami` sessions (a login, a key lookup, a command, no upload) at a fixed concurrency, the
three taking turns in short batches over many rounds so that the machine's changing load falls
on all three alike. `key_cache_seconds = 0`: every login looks its key up in the registry (the
worst case; the default cache of a few seconds hides the lookup for keys that log in again soon).
Goal: the rates differ by under 10% (an indexed lookup, not a scan). Reported: the median rate,
and the median over rounds of each size's rate divided by the 10-key rate of the same round.

Beside it, the lookup alone: `Registry.identity_for_key` per second for a registered and an
unknown key, called directly.

    python bench/key_registry.py [--quick] [--rounds N] [--concurrency 8] [--db postgres|sqlite]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (  # noqa: E402
    BenchEnv,
    machine,
    note,
    percentile,
    print_machine,
    print_table,
    run_ssh_batch,
    spread,
    ssh_argv,
)

SIZES = (10, 10_000, 100_000)


def lookups_per_second(registry, fingerprint: str, seconds: float = 2.0) -> float:
    count = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        registry.keys.identity_for_key(fingerprint)
        count += 1
    return count / (time.monotonic() - started)


def query_plan(registry, fingerprint: str) -> list[str]:
    """The database's plan for the login lookup, captured from `identity_for_key` itself."""
    from sqlalchemy import event

    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "ssh_keys" in statement:
            captured.append((statement, parameters))

    event.listen(registry.engine, "before_cursor_execute", capture)
    try:
        registry.keys.identity_for_key(fingerprint)
    finally:
        event.remove(registry.engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    sqlite = registry.engine.dialect.name == "sqlite"
    with registry.engine.connect() as conn:
        rows = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters).all()
    return [" ".join(str(part) for part in row[-1:]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 8)")
    parser.add_argument("--sessions", type=int, default=40, help="sessions per batch (default 40)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 8)
    print_machine(machine())

    rates: dict[int, list[float]] = {}
    relative: dict[int, list[float]] = {}
    latencies: dict[int, list[float]] = {}
    direct: dict[int, tuple[float, float]] = {}
    with BenchEnv("key_registry", db=args.db) as env:
        accounts = env.add_accounts(args.concurrency)
        gateways = {}
        for size in SIZES:
            if size == SIZES[0]:
                url, registry = env.database_url, env.registry
            else:
                url, registry = env.new_registry(f"k{size}")
                env.copy_accounts(registry, accounts)
            assert registry is not None
            env.add_filler_keys(size - env.key_count(registry), registry=registry)
            direct[size] = (lookups_per_second(registry, accounts[0].fingerprint),
                            lookups_per_second(registry, "SHA256:" + "A" * 43))
            gateways[size] = env.start_gateway(f"gateway-{size}", database_url=url, key_cache_seconds=0.0)
            if size == SIZES[-1]:
                plan = query_plan(registry, accounts[0].fingerprint)
                database = env.db
            print(f"  registry of {env.key_count(registry):,} keys ready", flush=True)
        note(f"{env.db} registries; {len(accounts)} accounts log in, the rest of the keys never do; "
             f"concurrency {args.concurrency}, {args.sessions} sessions per batch, {rounds} rounds")
        for size, target in gateways.items():  # warm-up
            run_ssh_batch([(ssh_argv(target, accounts[i % len(accounts)], "whoami"), None)
                           for i in range(args.concurrency)], args.concurrency, check=lambda s, o: s == 0)
        for round_index in range(rounds):
            order = list(SIZES)[round_index % 3:] + list(SIZES)[:round_index % 3]
            this_round = {}
            for size in order:
                jobs = [(ssh_argv(gateways[size], accounts[i % len(accounts)], "whoami"), None)
                        for i in range(args.sessions)]
                batch = run_ssh_batch(jobs, args.concurrency,
                                      check=lambda status, out: status == 0 and b"account:" in out)
                for failure in batch.failures[:3]:
                    note(f"{size} keys: failure {failure.detail}")
                this_round[size] = batch.rate
                rates.setdefault(size, []).append(batch.rate)
                latencies.setdefault(size, []).extend(r.seconds * 1000 for r in batch.ok)
            for size in SIZES:
                relative.setdefault(size, []).append(this_round[size] / this_round[SIZES[0]])
            print(f"  round {round_index + 1}: " + ", ".join(f"{size:,} keys {this_round[size]:.1f}/s" for size in SIZES),
                  flush=True)

    rows = []
    for size in SIZES:
        rows.append([f"{size:,}", spread(rates[size]), f"{statistics.median(relative[size]):.3f}",
                     f"{percentile(latencies[size], 50):.0f}", f"{percentile(latencies[size], 99):.0f}",
                     f"{direct[size][0]:.0f}", f"{direct[size][1]:.0f}"])
    print_table("Logins (`ssh ... whoami`) by registry size",
                ["registered keys", "sessions/s median (min-max)", "vs 10 keys, same round (median)",
                 "p50 ms", "p99 ms", "lookups/s (known key)", "lookups/s (unknown key)"], rows)
    print(f"Plan of the login lookup with {SIZES[-1]:,} keys ({database}):\n")
    for line in plan:
        print(f"    {line}")
    print()
    worst = max(abs(1 - statistics.median(relative[size])) for size in SIZES) * 100
    note(f"largest difference from the 10-key registry (median of same-round ratios): {worst:.1f}% "
         f"({'met' if worst < 10 else 'MISSED'}: goal under 10%)")


if __name__ == "__main__":
    main()

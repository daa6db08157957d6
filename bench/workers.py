"""`serve --workers 2` against `--workers 1` on this machine, with the load generator's own CPU.

Two gateways on the same registry and upstream, one with one worker process and one with two
(a supervisor and two workers sharing the port with SO_REUSEPORT), taking turns:
  - logins: `ssh ... whoami` (handshake, key lookup, a command): what scales with cores;
  - small uploads: a 50 KB sdist each, forwarded to the upstream.
Both through real OpenSSH `ssh` processes at a fixed concurrency. The CPU table says where the
machine's cores went per session: the gateway (supervisor and workers), the load generator (the
ssh clients and this script), the upstream, PostgreSQL and the rest of the machine.

    python bench/workers.py [--quick] [--rounds N] [--concurrency 16] [--db postgres|sqlite]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (  # noqa: E402
    BenchEnv,
    machine,
    make_uploads,
    note,
    percentile,
    print_machine,
    print_table,
    run_ssh_batch,
    spread,
    ssh_argv,
)

CPU_LABELS = ("gateway", "load generator", "upstream", "postgresql", "rest of machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    logins = 60 if args.quick else 200
    uploads_per_batch = 40 if args.quick else 120
    level = args.concurrency
    print_machine(machine())

    results: dict[tuple[str, str], list] = {}
    with BenchEnv("workers", db=args.db) as env:
        accounts = env.add_accounts(level)
        gateways = {"1 worker": env.start_gateway("gateway-1"),
                    "2 workers": env.start_gateway("gateway-2", workers=2)}
        pool = make_uploads(env.workdir / "uploads", uploads_per_batch * rounds * 2, 50_000, "w")
        note(f"{env.db} registry; concurrency {level}; {os.cpu_count()} cores")
        for round_index in range(rounds):
            names = list(gateways) if round_index % 2 == 0 else list(reversed(gateways))
            for kind in ("logins", "uploads"):
                for name in names:
                    target = gateways[name]
                    if kind == "logins":
                        jobs = [(ssh_argv(target, accounts[i % level], "whoami"), None) for i in range(logins)]
                        check = lambda status, out: status == 0 and b"account:" in out  # noqa: E731
                    else:
                        todo, pool = pool[:uploads_per_batch], pool[uploads_per_batch:]
                        jobs = [(ssh_argv(target, accounts[i % level]), u.request) for i, u in enumerate(todo)]
                        check = None
                    env.clear_upstream()
                    meter = env.cpu_meter(gateway=target.pid)
                    with meter:
                        batch = run_ssh_batch(jobs, level, check) if check else run_ssh_batch(jobs, level)
                    for failure in batch.failures[:3]:
                        note(f"{name} {kind}: {failure.detail}")
                    results.setdefault((kind, name), []).append((batch, meter))
                    print(f"  round {round_index + 1} {kind} {name}: {batch.rate:.1f}/s, machine busy "
                          f"{meter.busy():.2f} cores", flush=True)

    rows, cpu_rows = [], []
    for kind in ("logins", "uploads"):
        for name in ("1 worker", "2 workers"):
            runs = results[(kind, name)]
            latencies = [r.seconds * 1000 for batch, _ in runs for r in batch.ok]
            done = sum(len(batch.ok) for batch, _ in runs) or 1
            rows.append([kind, name, spread([batch.rate for batch, _ in runs]),
                         f"{percentile(latencies, 50):.0f}", f"{percentile(latencies, 99):.0f}",
                         sum(len(batch.failures) for batch, _ in runs)])
            used: dict[str, float] = {}
            for _, meter in runs:
                for label, value in meter.used.items():
                    used[label] = used.get(label, 0.0) + value
            cpu_rows.append([kind, name, *(f"{used.get(label, 0.0) * 1000 / done:.1f}" for label in CPU_LABELS),
                             f"{statistics.median([m.busy() for _, m in runs]):.2f}"])
    print_table(f"--workers 1 vs 2, concurrency {level}, {rounds} round(s)",
                ["sessions", "gateway", "per second median (min-max)", "p50 ms", "p99 ms", "failed"], rows)
    print_table("CPU ms per session, by process (machine busy: cores in use)",
                ["sessions", "gateway", *CPU_LABELS, "machine busy"], cpu_rows)
    for kind in ("logins", "uploads"):
        one = statistics.median([b.rate for b, _ in results[(kind, "1 worker")]])
        two = statistics.median([b.rate for b, _ in results[(kind, "2 workers")]])
        note(f"{kind}: 2 workers / 1 worker = {two / one:.2f}x")


if __name__ == "__main__":
    main()

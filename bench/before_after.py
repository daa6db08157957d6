"""Before and after the profiling fixes, measured side by side in one run.

The same gateway code runs five times, with fixes undone in-process by bench/_before.py:
"after" (as shipped), "before" (every fix undone), and three with one fix undone each, to show
what that fix bought. The variants take turns for each measure, so the machine's load falls on all of
them alike:
  - login and upload latency: sequential `ssh ... whoami` and 50 KB uploads (median);
  - small uploads at concurrency 8: uploads/s and the gateway's CPU per upload;
  - 100 MiB intake (`:action=submit`, answered by the gateway after parsing, spooling and hashing
    the whole body): seconds, the gateway's CPU, and how much its RSS grew.

    python bench/before_after.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed.knownhosts import known_hosts_lines  # noqa: E402
from _setup import (  # noqa: E402
    BenchEnv,
    Target,
    machine,
    make_uploads,
    note,
    print_machine,
    print_table,
    process_cpu,
    run_ssh_batch,
    spread,
    ssh_argv,
    write_large_request,
)
from testbed.scaleout import Replica  # noqa: E402

VARIANTS = {"after (as shipped)": "none", "before (all fixes undone)": "all",
            "after, chacha20 offered again": "chacha", "after, no immediate ACK": "quickack",
            "after, statements built per call": "statements"}


class UndoneReplica(Replica):
    """`pypissh-gateway serve` through bench/_before.py, with the named fixes undone."""

    def __init__(self, *args, undo: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.undo = undo

    def launch(self) -> "UndoneReplica":
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve().parent / "_before.py"), self.undo,
                 "--config", str(self.config), "serve"],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self


def start(env: BenchEnv, name: str, undo: str, **settings) -> Target:
    replica = UndoneReplica(env.workdir, env.gateway_settings(**settings), name=name, undo=undo)
    replica.start(timeout=60)
    env._processes.append(replica)
    known = env.workdir / f"{name}_known_hosts"
    known.write_text(known_hosts_lines(env.host_key_dir, replica.ssh_port))
    return Target(name, replica.ssh_port, known, replica.pid)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 2)")
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    sequential = 8 if args.quick else 15
    batch_size = 32 if args.quick else 48
    print_machine(machine())

    results: dict[tuple[str, str], list[float]] = {}

    def record(variant: str, measure: str, value: float) -> None:
        results.setdefault((variant, measure), []).append(value)

    with BenchEnv("before_after", db=args.db) as env:
        accounts = env.add_accounts(8)
        size = 100 * 2**20 - 64 * 1024
        targets = {label: start(env, f"gw-{undo}", undo, max_upload_bytes=100 * 2**20 + 2**20)
                   for label, undo in VARIANTS.items()}
        per_variant = rounds * (sequential + batch_size)
        pools = {label: make_uploads(env.workdir / "uploads" / undo, per_variant, 50_000, undo[:6])
                 for label, undo in VARIANTS.items()}
        folder = env.workdir / "files"
        folder.mkdir()
        folder.chmod(0o755)
        intake = write_large_request(folder / "intake.request", size, action="submit")
        for round_index in range(rounds):
            labels = list(VARIANTS) if round_index % 2 == 0 else list(reversed(VARIANTS))
            for label in labels:  # logins, one at a time
                target = targets[label]
                jobs = [(ssh_argv(target, accounts[0], "whoami"), None) for _ in range(sequential)]
                batch = run_ssh_batch(jobs, 1, check=lambda status, out: status == 0)
                record(label, "login ms", statistics.median(r.seconds * 1000 for r in batch.ok))
            for label in labels:  # uploads, one at a time
                target = targets[label]
                todo, pools[label] = pools[label][:sequential], pools[label][sequential:]
                env.clear_upstream()
                batch = run_ssh_batch([(ssh_argv(target, accounts[0]), u.request) for u in todo], 1)
                record(label, "upload ms", statistics.median(r.seconds * 1000 for r in batch.ok))
            for label in labels:  # uploads at concurrency 8
                target = targets[label]
                todo, pools[label] = pools[label][:batch_size], pools[label][batch_size:]
                env.clear_upstream()
                cpu = process_cpu(target.pid)
                batch = run_ssh_batch([(ssh_argv(target, accounts[i % 8]), u.request) for i, u in enumerate(todo)], 8)
                record(label, "uploads/s at 8", batch.rate)
                record(label, "gateway CPU ms/upload", (process_cpu(target.pid) - cpu) * 1000 / max(1, len(batch.ok)))
                for failure in batch.failures[:2]:
                    note(f"{label}: {failure.detail}")
            for label in labels:  # 100 MiB intake
                target = targets[label]
                rss = status_kib(target.pid, "VmRSS")
                Path(f"/proc/{target.pid}/clear_refs").write_text("5")
                cpu = process_cpu(target.pid)
                started = time.monotonic()
                with open(intake.request, "rb") as handle:
                    proc = subprocess.run(ssh_argv(target, accounts[0]), stdin=handle, capture_output=True, timeout=600)
                if not proc.stdout.startswith(b"HTTP/1.0 200"):
                    note(f"{label} intake failed: {proc.stdout[:100]!r} {proc.stderr[-200:]!r}")
                record(label, "100 MiB intake s", time.monotonic() - started)
                record(label, "intake gateway CPU s", process_cpu(target.pid) - cpu)
                record(label, "intake RSS growth MiB", (status_kib(target.pid, "VmHWM") - rss) / 1024)
            print(f"  round {round_index + 1} done", flush=True)

    measures = ["login ms", "upload ms", "uploads/s at 8", "gateway CPU ms/upload", "100 MiB intake s",
                "intake gateway CPU s", "intake RSS growth MiB"]
    rows = [[label, *(spread(results[(label, m)], "{:.2f}" if "s" == m.split()[-1] else "{:.1f}")
                      for m in measures)] for label in VARIANTS]
    print_table(f"Before and after the profiling fixes, {rounds} round(s) (median (min-max) over rounds)",
                ["gateway", *measures], rows)


if __name__ == "__main__":
    main()

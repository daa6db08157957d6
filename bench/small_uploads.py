"""Small uploads (a 50 KB sdist) at concurrency 1, 8 and 32: uploads per second, p50 and p99.

Peers, side by side in one run, same client, same upstream (a real pypiserver behind TLS):
  (a) the gateway (`pypissh-gateway serve`, asyncssh), the legacy request sent by OpenSSH's `ssh`;
  (c) a direct HTTPS upload of the same file to the upstream, as twine does it (a fresh
      connection per upload, `content` last, `__token__`);
  (d) the same `ssh` client and request into OpenSSH's sshd with a plain authorized_keys file and
      `cat >/dev/null`: no key command, no shim, nothing forwarded. The ceiling of any design
      behind sshd on this machine (what sshd's own logins cost);
  (e) the OpenSSH mode: a running replica (`openssh_mode = true`) keeps `authorized_keys_file`,
      sshd's AuthorizedKeysCommand is `grep -F %k` on it, and the forced command runs the shim as
      a file with `python -I -S`, which hands the session to that replica over its UNIX socket;
      the same `ssh` client and request. (Peer (b) of bench/RESULTS.md, the key command asking the
      replica, was removed with that set-up.)
Goals: the OpenSSH mode (e) >= 0.5x (a) at concurrency 8, and (a) >= 0.8x (c).

Every upload is a distinct project (the upstream never answers 409), built before timing. Batches
are closed-loop (each of N workers starts its next upload when the last one ends); the peers
take turns within each round, so drift in the machine's load falls on all of them alike.

    python bench/small_uploads.py [--quick] [--rounds N] [--concurrency 1,8,32] [--db postgres|sqlite]
                                  [--profile] [--no-ceiling] [--no-key-file]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (  # noqa: E402
    BenchEnv,
    Batch,
    CpuMeter,
    Profiler,
    SampleUpload,
    https_upload,
    machine,
    make_uploads,
    note,
    percentile,
    print_machine,
    print_table,
    run_ssh_batch,
    run_thread_batch,
    spread,
    ssh_argv,
    twine_fields,
)

SIZE = 50_000
# Uploads per batch: enough for a few seconds of steady state at each concurrency.
COUNTS = {key: lambda c: max(30, 5 * c) for key in "acde"}
QUICK_COUNTS = {key: lambda c: max(10, 3 * c) for key in "acde"}
# "sshd" counts the sshd of peer (d) or (e) and everything it starts per login: for (e) grep
# (twice) and the shim, for (d) `cat`.
CPU_LABELS = ("gateway", "sshd", "replica (e)", "upstream", "postgresql", "load generator", "rest of machine")
PEERS = "acde"
SSHD_PEERS = "de"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (to try the script)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per peer and concurrency (default 3)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway during its batches")
    parser.add_argument("--no-ceiling", action="store_true", help="leave out peer (d)")
    parser.add_argument("--no-key-file", action="store_true", help="leave out peer (e)")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    rounds = args.rounds or (1 if args.quick else 3)
    counts = QUICK_COUNTS if args.quick else COUNTS
    info = machine()
    print_machine(info)

    with BenchEnv("small_uploads", db=args.db) as env:
        accounts = env.add_accounts(max(levels))
        peers = {"a": env.start_gateway()}
        if not args.no_key_file:
            try:
                peers["e"] = env.start_openssh_mode()
            except RuntimeError as exc:
                note(f"peer (e) not run: {exc}")
        if not args.no_ceiling:
            try:
                peers["d"] = env.start_raw_sshd(accounts, gateway_algorithms=True)
            except RuntimeError as exc:
                note(f"peer (d) not run: {exc}")

        wanted = {key: sum(counts[key](c) for c in levels) * rounds for key in PEERS}
        pools: dict[str, list[SampleUpload]] = {
            key: make_uploads(env.workdir / "uploads" / key, wanted[key], SIZE, f"s{key}")
            for key in PEERS if key in peers or key == "c"}
        fields = {upload.name: twine_fields(upload) for upload in pools["c"]}
        note(f"{env.db} registry, {len(accounts)} accounts; upstream: pypiserver under gunicorn "
             f"(2 workers x 8 threads) behind TLS; sample sdist {pools['a'][0].size} bytes")

        batches: dict[tuple[str, int], list[Batch]] = {}
        meters: dict[tuple[str, int], list[CpuMeter]] = {}
        profiler = None
        for round_index in range(rounds):
            for level in levels:
                shift = round_index % len(PEERS)
                order = list(PEERS[shift:] + PEERS[:shift])
                for key in order:
                    if key != "c" and key not in peers:
                        continue
                    count = counts[key](level)
                    todo, pools[key] = pools[key][:count], pools[key][count:]
                    env.clear_upstream()
                    meter = env.cpu_meter(**{"gateway": peers["a"].pid,
                                             "sshd": peers[key].pid if key in SSHD_PEERS else None,
                                             "replica (e)": env.openssh_replica_pids.get(peers[key].label)
                                             if key in "be" else None})
                    profiling = (args.profile and key == "a" and level == max(levels)
                                 and round_index == rounds - 1)
                    if profiling:
                        profiler = Profiler(peers["a"].pid, env.workdir / "profile-gateway.txt")
                    with meter, (profiler if profiling else contextlib.nullcontext()):
                        if key == "c":
                            batch = run_thread_batch(
                                [lambda u=u: https_upload(env.upstream, u, fields[u.name])[0] == 200 for u in todo],
                                level)
                        elif key == "d":
                            jobs = [(ssh_argv(peers[key], accounts[i % len(accounts)], "cat >/dev/null"), u.request)
                                    for i, u in enumerate(todo)]
                            batch = run_ssh_batch(jobs, level, check=lambda status, _out: status == 0)
                        else:
                            jobs = [(ssh_argv(peers[key], accounts[i % len(accounts)]), u.request)
                                    for i, u in enumerate(todo)]
                            batch = run_ssh_batch(jobs, level)
                    batches.setdefault((key, level), []).append(batch)
                    meters.setdefault((key, level), []).append(meter)
                    for failure in batch.failures[:3]:
                        note(f"{key} c={level} failure: {failure.detail}")
                    print(f"  round {round_index + 1} {key} c={level}: {len(batch.ok)}/{len(batch.results)} ok "
                          f"in {batch.wall:.1f} s ({batch.rate:.1f}/s), machine busy {meter.busy():.2f} cores",
                          flush=True)

    labels = {"a": "(a) gateway (asyncssh)", "c": "(c) direct HTTPS (twine-like)",
              "d": "(d) sshd `cat >/dev/null`", "e": "(e) sshd + key file + shim"}
    rows = []
    cpu_rows = []
    for key in PEERS:
        for level in levels:
            done = batches.get((key, level))
            if not done:
                continue
            latencies = [r.seconds * 1000 for b in done for r in b.ok]
            failures = sum(len(b.failures) for b in done)
            uploads = sum(len(b.ok) for b in done) or 1
            rows.append([labels[key], level, spread([b.rate for b in done]),
                         f"{percentile(latencies, 50):.0f}" if latencies else "-",
                         f"{percentile(latencies, 99):.0f}" if latencies else "-", failures])
            cpu = {}
            for meter in meters[(key, level)]:
                for label, value in meter.used.items():
                    cpu[label] = cpu.get(label, 0.0) + value
            busy = statistics.median([m.busy() for m in meters[(key, level)]])
            cpu_rows.append([labels[key], level] + [f"{cpu.get(label, 0.0) * 1000 / uploads:.1f}"
                                                    for label in CPU_LABELS] + [f"{busy:.2f}"])
    print_table(f"Small uploads ({SIZE // 1000} KB sdist), {rounds} round(s)",
                ["peer", "conc.", "uploads/s median (min-max)", "p50 ms", "p99 ms", "failed"], rows)
    print_table("CPU ms per upload, by process (machine busy: cores in use, of 2)",
                ["peer", "conc.", *CPU_LABELS, "machine busy"], cpu_rows)

    ratio_rows = []
    for level in levels:
        rate = {key: statistics.median([b.rate for b in batches[(key, level)]])
                for key in PEERS if (key, level) in batches}
        ea, da = (rate[key] / rate["a"] if rate.get(key) else None for key in "ed")
        ac = rate["a"] / rate["c"] if rate.get("c") else None
        ratio_rows.append([level,
                           f"{ea:.2f}x" if ea else "-",
                           ("met" if ea >= 0.5 else "MISSED") if ea and level == 8 else "-",
                           f"{da:.2f}x" if da else "-",
                           f"{ac:.2f}x" if ac else "-", ("met" if ac >= 0.8 else "MISSED") if ac else "-"])
    print_table("Ratios (median rates)", ["conc.", "(e)/(a)", "goal >= 0.5x at 8",
                                          "(d)/(a): sshd's ceiling", "(a)/(c)", "goal >= 0.8x"], ratio_rows)
    if profiler is not None:
        print("### Gateway profile (py-spy, last round at the highest concurrency)\n")
        print(profiler.summary())


if __name__ == "__main__":
    main()

"""Large uploads (100 MiB): end-to-end time through the gateway against a direct HTTPS upload, and
the gateway's raw SSH intake against OpenSSH's.

  (a) end to end: the legacy request through `ssh` and the gateway to the upstream, until `ssh`
      exits with the upstream's 200;
  (c) a direct HTTPS upload of the same size (twine's way: requests, streamed multipart, fresh
      connection) to the same upstream.                               Goal: (a) <= 1.5x (c).
  (a) intake: the same request with `:action=submit`, which the gateway answers itself after the
      whole body has arrived, been parsed, spooled to disk and hashed: the SSH intake path alone;
  (d) `ssh ... cat >/dev/null` of the same bytes through OpenSSH's sshd: the ceiling.

    python bench/large_uploads.py [--quick] [--rounds N] [--mib 100] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import (  # noqa: E402
    BenchEnv,
    Profiler,
    answered_200,
    https_upload,
    machine,
    note,
    print_machine,
    print_table,
    process_cpu,
    spread,
    ssh_argv,
    twine_fields,
    write_large_request,
)


def timed_ssh(argv: list[str], stdin: Path) -> tuple[float, bool, str]:
    started = time.monotonic()
    with open(stdin, "rb") as handle:
        proc = subprocess.run(argv, stdin=handle, capture_output=True, timeout=900)
    ok = proc.returncode == 0 and (answered_200(proc.stdout) or not proc.stdout)
    return time.monotonic() - started, ok, (proc.stdout[:200] + proc.stderr[-300:]).decode("latin-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--mib", type=int, default=100, help="upload size in MiB (default 100)")
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway during the last (a) runs")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    # Just under the limit: the tar and gzip framing add a few KiB around the payload.
    size = args.mib * 2**20 - 64 * 1024
    print_machine(machine())

    times: dict[str, list[float]] = {"a": [], "c": [], "a intake": [], "d": []}
    gateway_cpu: dict[str, list[float]] = {"a": [], "a intake": []}
    peak_rss: list[int] = []
    profiles = []
    with BenchEnv("large_uploads", db=args.db) as env:
        (account,) = env.add_accounts(1)
        gateway = env.start_gateway(max_upload_bytes=max(size + 2**20, 100 * 2**20))
        raw = env.start_raw_sshd([account])
        folder = env.workdir / "files"
        folder.mkdir()
        folder.chmod(0o755)
        for round_index in range(rounds):
            upload = write_large_request(folder / f"upload{round_index}.request", size)
            intake = write_large_request(folder / f"intake{round_index}.request", size, action="submit")
            direct = write_large_request(folder / f"direct{round_index}.request", size)
            fields = twine_fields(direct)
            profiling = args.profile and round_index == rounds - 1
            for key in ("a", "c", "a intake", "d")[round_index % 2::1] + ("a", "c", "a intake", "d")[:round_index % 2]:
                env.clear_upstream()
                cpu = process_cpu(gateway.pid)
                if key in ("a", "a intake"):
                    Path(f"/proc/{gateway.pid}/clear_refs").write_text("5")
                # Not only the GIL holder: hashing and file writes release the GIL but are CPU.
                profiler = (Profiler(gateway.pid, env.workdir / f"profile-{key.replace(' ', '-')}.txt", gil=False)
                            if profiling and key in ("a", "a intake") else None)
                if profiler:
                    profiler.__enter__()
                try:
                    if key == "a":
                        seconds, ok, detail = timed_ssh(ssh_argv(gateway, account), upload.request)
                    elif key == "a intake":
                        seconds, ok, detail = timed_ssh(ssh_argv(gateway, account), intake.request)
                    elif key == "d":
                        seconds, ok, detail = timed_ssh(ssh_argv(raw, account, "cat >/dev/null"), intake.request)
                    else:
                        started = time.monotonic()
                        status, reason = https_upload(env.upstream, direct, fields)
                        seconds, ok, detail = time.monotonic() - started, status == 200, f"{status} {reason}"
                finally:
                    if profiler:
                        profiler.__exit__(None, None, None)
                        profiles.append((key, profiler))
                if not ok:
                    note(f"{key} failed: {detail}")
                    continue
                times[key].append(seconds)
                if key in gateway_cpu:
                    gateway_cpu[key].append(process_cpu(gateway.pid) - cpu)
                    if key == "a":
                        peak_rss.append(replica_peak(gateway.pid))
                print(f"  round {round_index + 1} {key}: {seconds:.2f} s", flush=True)
            for path in folder.iterdir():
                path.unlink()

    mb = size / 1e6
    labels = {"a": "(a) gateway, end to end", "c": "(c) direct HTTPS (twine-like)",
              "a intake": "(a) gateway, SSH intake only (parsed, spooled, hashed)",
              "d": "(d) sshd `cat >/dev/null`"}
    rows = []
    for key in ("a", "c", "a intake", "d"):
        values = times[key]
        cpu = (f"{statistics.median(gateway_cpu[key]):.2f}" if gateway_cpu.get(key) else "-")
        rows.append([labels[key], spread(values, "{:.2f}"),
                     f"{mb / statistics.median(values):.0f}" if values else "-", cpu])
    print_table(f"Large upload ({size / 2**20:.1f} MiB), {rounds} round(s)",
                ["peer", "seconds median (min-max)", "MB/s", "gateway CPU s"], rows)
    ratios = []
    if times["a"] and times["c"]:
        ratio = statistics.median(times["a"]) / statistics.median(times["c"])
        ratios.append(["(a) / (c) end-to-end time", f"{ratio:.2f}x", "<= 1.5x", "met" if ratio <= 1.5 else "MISSED"])
    if times["a intake"] and times["d"]:
        ratio = statistics.median(times["a intake"]) / statistics.median(times["d"])
        ratios.append(["(a) intake / (d) sshd cat time", f"{ratio:.2f}x", "close to 1x", ""])
    print_table("Ratios (median times)", ["comparison", "ratio", "goal", ""], ratios)
    if peak_rss:
        note(f"gateway peak RSS during (a): {max(peak_rss) / 1024:.0f} MiB (VmHWM, reset before each run)")
    for key, profiler in profiles:
        print(f"### Gateway profile during {labels[key]}\n")
        print(profiler.summary(20))


def replica_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()

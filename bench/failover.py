"""A registry failover under a stream of real legacy uploads, with 1 and 2 gateway replicas.

For each replica count and run: a primary and a synchronous streaming standby of our own
(testbed/pgpair.py), the replicas behind HAProxy on the multi-host URL with
`target_session_attrs=read-write`, and `--clients` legacy clients uploading back to back (each a
new project, `setup.py sdist upload` through pypissh and OpenSSH). The primary is stopped with
`pg_ctl stop -m immediate`, the outage lasts `--outage` seconds, then the standby is promoted
(`pg_ctl promote`). Nothing is restarted or reconfigured. Printed per run:
  - promotion -> first success: from the promotion's return to the end of the first upload
    that then succeeded;
  - promotion -> all ready: until every replica's /readyz answers 200 again;
  - refused: uploads that ended after the crash and were not published (each client tries again
    at once, so this counts attempts, not users), and what their clients were told;
  - published across the crash or the promotion: uploads in flight at either moment that landed;
  - truth: every upload told `Server response (200)` is at the upstream byte for byte, and every
    other one is not there and was told that nothing was published.

    python bench/failover.py [--runs 3] [--outage 5] [--clients 2] [--replicas 1 2] [--key-cache 5]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import machine, note, print_machine, print_table, spread  # noqa: E402

from gateway.ssh import hostkeys  # noqa: E402
from testbed import wait_until  # noqa: E402
from testbed.failover import Attempt, FailoverRig  # noqa: E402
from testbed.upstream import TlsPypiServer  # noqa: E402

NOTHING_PUBLISHED = "nothing was published"
WARM_SUCCESSES = 4
SUCCESSES_AFTER = 3


@dataclass(frozen=True)
class UserKey:
    path: Path
    public_line: str


@dataclass
class RunResult:
    replicas: int
    to_first_success: float
    to_ready: float
    refused: int
    published_across_crash: int  # in flight when the primary died, published, and told so
    published_across_promotion: int  # started during the outage, published once the standby took over
    told: collections.Counter
    truthful: bool


def user_key(folder: Path) -> UserKey:
    path = folder / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@bench", "-f", str(path)], check=True)
    return UserKey(path, path.with_suffix(".pub").read_text().strip())


def stream(rig: FailoverRig, tag: str, stop: threading.Event, out: list[Attempt]) -> None:
    count = 0
    while not stop.is_set():
        count += 1
        out.append(rig.upload(f"Bench-{tag}-{count}"))


def succeeded_after(attempts: list[Attempt], moment: float) -> list[Attempt]:
    return [a for a in list(attempts) if a.told_success and a.ended > moment]


def one_run(workdir: Path, upstream: TlsPypiServer, keys: Path, key: UserKey, replicas: int, clients: int,
            outage: float, key_cache: float, label: str) -> RunResult:
    attempts: list[Attempt] = []
    stop = threading.Event()
    with FailoverRig(workdir, upstream, keys, key, replicas=replicas, key_cache_seconds=key_cache) as rig:
        threads = [threading.Thread(target=stream, args=(rig, f"{label}-c{i}", stop, attempts))
                   for i in range(clients)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(succeeded_after(attempts, 0)) >= WARM_SUCCESSES, timeout=60,
                     what="the stream to warm up")
            rig.pair.primary.stop_hard()
            crashed_at = time.monotonic()
            time.sleep(outage)  # the outage's length is this run's input, not a condition to wait for
            rig.pair.standby.promote()
            promoted_at = time.monotonic()
            ready_at = wait_until(lambda: rig.all_ready(True) and time.monotonic(), timeout=60,
                                what="every replica to be ready")
            wait_until(lambda: len(succeeded_after(attempts, promoted_at)) >= SUCCESSES_AFTER, timeout=60,
                     what="uploads to succeed after the promotion")
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
    files = upstream.files()
    truthful = all(told_the_truth(a, files) for a in attempts)
    after_crash = [a for a in attempts if a.ended > crashed_at]
    refused = [a for a in after_crash if not a.told_success]
    first = min(a.ended for a in succeeded_after(attempts, promoted_at))
    told = collections.Counter(re.sub(r"port \d+", "port N", a.told()) for a in refused)
    across_crash = sum(1 for a in after_crash if a.told_success and a.started < crashed_at)
    across_promotion = sum(1 for a in after_crash if a.told_success and crashed_at <= a.started < promoted_at)
    return RunResult(replicas, first - promoted_at, ready_at - promoted_at, len(refused), across_crash,
                     across_promotion, told, truthful)


def told_the_truth(attempt: Attempt, files: dict[str, str]) -> bool:
    """Success printed only for a file at the upstream byte for byte; a refusal says nothing was published."""
    if attempt.told_success:
        return files.get(attempt.upstream_name) == attempt.sha256
    return attempt.upstream_name not in files and NOTHING_PUBLISHED in attempt.output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per replica count (default 3)")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds between the crash and the promotion")
    parser.add_argument("--clients", type=int, default=2, help="legacy clients uploading back to back")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--key-cache", type=float, default=5.0,
                        help="key_cache_seconds of the replicas (default 5, the setting's default)")
    args = parser.parse_args()
    print_machine(machine())
    note(f"{args.clients} clients uploading back to back; outage {args.outage:.1f} s; key_cache_seconds "
         f"{args.key_cache:g}; {args.runs} run(s) each")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="pypissh-bench-failover-") as tmp:
        base = Path(tmp)
        keys = base / "hostkeys"
        keys.mkdir()
        hostkeys.generate(keys)
        key = user_key(base)
        upstream = TlsPypiServer(base / "upstream")
        upstream.start()
        try:
            for replicas in args.replicas:
                for run in range(args.runs):
                    label = f"r{replicas}-{run + 1}"
                    result = one_run(base / label, upstream, keys, key, replicas, args.clients, args.outage,
                                     args.key_cache, label)
                    results.append(result)
                    note(f"{label}: first success {result.to_first_success:.2f} s after the promotion, all ready "
                         f"after {result.to_ready:.2f} s, {result.refused} refused, truthful: {result.truthful}")
        finally:
            upstream.stop()

    rows = []
    for replicas in args.replicas:
        mine = [r for r in results if r.replicas == replicas]
        rows.append([replicas, spread([r.to_first_success for r in mine], "{:.2f}"),
                     spread([r.to_ready for r in mine], "{:.2f}"), spread([r.refused for r in mine], "{:.0f}"),
                     sum(r.published_across_crash for r in mine), sum(r.published_across_promotion for r in mine),
                     "yes" if all(r.truthful for r in mine) else "NO"])
    print_table("Failover: median (min-max) over the runs; the published columns are totals",
                ["replicas", "promotion -> first success (s)", "promotion -> all ready (s)",
                 f"refused in the {args.outage:.0f} s outage", "in flight at the crash, published",
                 "started in the outage, published after the promotion", "every client told the truth"],
                rows)
    told = collections.Counter()
    for result in results:
        told.update(result.told)
    print_table("What the refused clients were told", ["times", "line"],
                [[count, line] for line, count in told.most_common()])
    if not all(r.truthful for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()

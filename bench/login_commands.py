"""The OpenSSH mode's per-login programs against a bare interpreter start: wall time and CPU.

sshd runs its AuthorizedKeysCommand (`grep -F %k` on the replica's key file) twice per login and
the forced command (the shim, `shimexec.py`) once per session; the console script's commands of
the same names (`authorized-keys-command`, printing the key file's line, and `stdio`, the same
shim) are measured beside them. Goals (medians): `authorized-keys-command` at most 4x, and a shim
`whoami` at most 6x, `python -c pass` of the same interpreter and environment.

Two interpreters, each against its own `python -c pass`:
  - this virtualenv's Python, running the installed console script `pypissh-gateway` (a checkout's
    editable install adds an import hook to every start of this interpreter, baseline included);
  - Debian's Python of the same version with the virtualenv's packages on PYTHONPATH and no site
    (`-S`), running the console script's code: how the benchmark's sshd runs the per-login programs
    (testbed/sshdutil.py `session_program`: user `submit` cannot run this virtualenv's
    interpreter), and what a start costs without any .pth hook.

A replica (`serve` with openssh_mode = true, shim_user = this user) keeps the key file and
answers the sessions. The commands take turns in every round.

    python bench/login_commands.py [--runs N] [--db postgres|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import OUT, machine, note, print_machine, print_table, write_user_key  # noqa: E402

from gateway.registry import Registry  # noqa: E402
from gateway.registry.migrate_db import upgrade  # noqa: E402
from gateway.ssh import hostkeys  # noqa: E402
from gateway.ssh.keyfile import SHIMEXEC  # noqa: E402
from gateway.sshkeys import parse_public_key  # noqa: E402
from gateway.tokens import create_key_file  # noqa: E402
from testbed import SOURCE_ROOT, postgres  # noqa: E402
from testbed.scaleout import Replica  # noqa: E402

SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
# What the console script does (pip writes it), for an interpreter started by hand.
CONSOLE_SCRIPT = "import sys; from gateway.entry import main; main()"
SHIM = str(Path(SHIMEXEC).resolve())


def measure(argv: list[str], env: dict[str, str], check: bytes) -> tuple[float, float]:
    """(wall ms, CPU ms) of one run; the output must start with `check`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not done.stdout.startswith(check):
        raise RuntimeError(f"{argv[-6:]} failed ({done.returncode}): {done.stdout[:200]!r} {done.stderr[-300:]!r}")
    return wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="runs of each command (default 40)")
    parser.add_argument("--db", default="auto", choices=["auto", "postgres", "sqlite"])
    args = parser.parse_args()
    print_machine(machine())
    db = args.db if args.db != "auto" else ("postgres" if postgres.unavailable_reason() is None else "sqlite")
    workdir = OUT / "login_commands"
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        url = (stack.enter_context(postgres.temporary_database("pypissh_bench_login")) if db == "postgres"
               else f"sqlite:///{workdir / 'registry.sqlite3'}")
        if db == "sqlite":
            (workdir / "registry.sqlite3").unlink(missing_ok=True)
        upgrade(url)
        registry = Registry.from_url(url)
        stack.callback(registry.close)
        key_path = workdir / "alice"
        for path in (key_path, Path(str(key_path) + ".pub")):
            path.unlink(missing_ok=True)
        key = parse_public_key(write_user_key(key_path, "alice@bench"))
        registry.accounts.add_account("alice", email="alice@example.org")
        registry.keys.add_key("alice", key)
        if not (workdir / "hostkeys").exists():
            hostkeys.generate(workdir / "hostkeys")
        create_key_file(workdir / "secret.key")  # as `keygen` makes it (kept when it exists)
        socket_dir = Path(tempfile.mkdtemp(prefix="pypissh-bench-"))  # short: a UNIX socket's path
        stack.callback(shutil.rmtree, socket_dir, ignore_errors=True)
        socket_path = socket_dir / "shim.sock"
        replica = Replica(workdir, dict(
            database_url=url, host_key_dir=str(workdir / "hostkeys"), secret_key_file=str(workdir / "secret.key"),
            openssh_mode=True, shim_socket=str(socket_path), shim_user=pwd.getpwuid(os.geteuid()).pw_name,
            authorized_keys_file=str(socket_dir / "authorized_keys")), name="replica")
        replica.start(timeout=60)
        stack.callback(replica.stop)
        deadline = time.monotonic() + 30
        while not (socket_dir / "authorized_keys").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        results = run_all(replica.config, key, args.runs, socket_dir)
    note(f"{db} registry; {args.runs} runs of each command, taking turns; "
         f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(results)


def commands(config: Path, key, socket_dir: Path) -> dict[str, dict[str, tuple[list[str], dict[str, str], bytes]]]:
    kind, blob = key.openssh.split()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPISSH_", "SSH_", "PYTHON"))}
    system_env = dict(base_env, PYTHONPATH=os.pathsep.join(
        [str(Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"),
         str(SOURCE_ROOT)]))
    key_args = ["--config", str(config), "authorized-keys-command", "submit", blob, kind]
    whoami = ["--config", str(config), "stdio", "--account", "alice", "--fingerprint", key.fingerprint]
    groups = {}
    for label, launcher, env in (
            ("virtualenv", [str(PROGRAM)], base_env),
            ("Debian python -S", [str(SYSTEM_PYTHON), "-S", "-c", CONSOLE_SCRIPT], system_env)):
        python = [sys.executable] if label == "virtualenv" else [str(SYSTEM_PYTHON), "-S"]
        if label != "virtualenv" and not SYSTEM_PYTHON.exists():
            continue
        groups[label] = {
            "python -c pass": ([*python, "-c", "pass"], env, b""),
            "authorized-keys-command (reads the key file)": ([*launcher, *key_args], env, b"restrict,"),
            "stdio whoami (shim -> replica)": ([*launcher, *whoami], dict(env, SSH_ORIGINAL_COMMAND="whoami"),
                                               b"account:  alice"),
            # What sshd runs: the key lookup is grep, the forced command the shim as a file.
            "grep -F %k on authorized_keys_file": (
                ["/usr/bin/grep", "-F", "--", blob, str(socket_dir / "authorized_keys")], env, b"restrict,"),
            "shimexec.py whoami (python -I -S, authorized_keys_file)": (
                [python[0], "-I", "-S", SHIM, "--socket", str(socket_dir / "shim.sock"), "--account", "alice",
                 "--fingerprint", key.fingerprint], dict(env, SSH_ORIGINAL_COMMAND="whoami"), b"account:  alice"),
        }
    return groups


def run_all(config: Path, key, runs: int, socket_dir: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    groups = commands(config, key, socket_dir)
    results: dict[str, dict[str, list[tuple[float, float]]]] = {g: {c: [] for c in cmds} for g, cmds in groups.items()}
    for group, cmds in groups.items():  # warm the page cache and the bytecode
        for argv, env, check in cmds.values():
            measure(argv, env, check)
    for _ in range(runs):
        for group, cmds in groups.items():
            for name, (argv, env, check) in cmds.items():
                results[group][name].append(measure(argv, env, check))
    return results


def report(results: dict[str, dict[str, list[tuple[float, float]]]]) -> None:
    goals = {"authorized-keys-command (reads the key file)": 4.0, "stdio whoami (shim -> replica)": 6.0,
             "shimexec.py whoami (python -I -S, authorized_keys_file)": 6.0}
    for group, by_command in results.items():
        base_wall = statistics.median(w for w, _ in by_command["python -c pass"])
        base_cpu = statistics.median(c for _, c in by_command["python -c pass"])
        rows = []
        for name, samples in by_command.items():
            wall = statistics.median(w for w, _ in samples)
            cpu = statistics.median(c for _, c in samples)
            goal = goals.get(name)
            status = ("met" if wall / base_wall <= goal else "MISSED") if goal else ""
            rows.append([name, f"{wall:.1f}", f"{cpu:.1f}", f"{wall / base_wall:.2f}x", f"{cpu / base_cpu:.2f}x",
                         f"<= {goal:.0f}x {status}" if goal else "", len(samples)])
        print_table(f"Per-login commands, {group}", ["command", "wall ms (median)", "CPU ms (median)",
                                                     "wall / pass", "CPU / pass", "goal (wall)", "runs"], rows)


if __name__ == "__main__":
    main()

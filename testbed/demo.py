"""The quick-start job: one legacy upload end to end on the embedded defaults.

It starts a local TLS pypiserver as the upstream, sets up the gateway on SQLite with the real
commands an operator would type (init, accounts add, keys add, set-token, check; its state in one
home, PYPISSH_HOME), starts
`pypissh-gateway serve`, uploads a sample package with the stdlib distutils `register sdist upload`
through the real OpenSSH client (the pypissh way), shows what the user sees and where the file
landed, and stops everything.

    python -m testbed.demo [--workdir var/demo] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from testbed import free_port
from testbed.knownhosts import known_hosts_lines
from testbed.sample import make_legacy_project, run_legacy, write_pypirc
from testbed.upstream import TlsPypiServer

console = Console(highlight=False)
BIN = Path(sys.executable).parent



def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def run(argv: list[str], env: dict, *, stdin: str | None = None) -> str:
    shown = " ".join(shlex.quote(a) for a in argv).replace(str(BIN) + "/", "")
    console.print(f"[dim]$[/dim] {shown}" + (" [dim]< token[/dim]" if stdin else ""))
    result = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True)
    output = (result.stdout + result.stderr).rstrip()
    if output:
        print(output, flush=True)  # as the command printed it (rich would re-wrap its tables)
    if result.returncode != 0:
        raise SystemExit(f"demo: command failed with exit status {result.returncode}")
    return result.stdout


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("demo: the gateway exited during start-up (see its log above)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("demo: the gateway did not start listening in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="var/demo", help="where the demo keeps its files (wiped first)")
    parser.add_argument("--keep", action="store_true", help="leave the gateway and upstream files in place")
    args = parser.parse_args(argv)
    if shutil.which("ssh") is None:
        raise SystemExit("demo: the OpenSSH client is needed (`./dev demo` installs it)")

    work = Path(args.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port, health_port = free_port(), free_port()

    step("1. A local upload server (pypiserver behind TLS, signed by a throwaway CA)")
    upstream = TlsPypiServer(work / "upstream").start()
    console.print(f"upstream: {upstream.url}  (CA {upstream.ca_file.relative_to(work.parent)})")
    gateway_proc: subprocess.Popen | None = None
    try:
        home = work / "home"  # the gateway's state: registry, host keys, secret key (`init` makes them)
        env = dict(
            {k: v for k, v in os.environ.items() if not k.startswith("PYPISSH_")},
            PYPISSH_HOME=str(home),
            PYPISSH_UPSTREAM_URL=upstream.url,
            PYPISSH_UPSTREAM_CA_BUNDLE=str(upstream.ca_file),
            PYPISSH_INDEX_URL=upstream.simple_url,
            PYPISSH_LISTEN=f"127.0.0.1:{port}",
            PYPISSH_HEALTH_LISTEN=f"127.0.0.1:{health_port}",
            PYPISSH_PUBLIC_HOST="127.0.0.1",
            PYPISSH_PUBLIC_PORT=str(port),
        )
        gateway_cmd, migrate_cmd = str(BIN / "pypissh-gateway"), str(BIN / "pypissh-migrate")

        step("2. The operator sets up the gateway")
        run([gateway_cmd, "init"], env)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "demo@laptop",
                        "-f", str(work / "id_ed25519")], check=True)
        run([migrate_cmd, "accounts", "add", "demo", "--email", "demo@example.org"], env)
        run([migrate_cmd, "keys", "add", "demo", str(work / "id_ed25519.pub")], env)
        run([migrate_cmd, "accounts", "set-token", "demo"], env, stdin=upstream.token + "\n")
        run([gateway_cmd, "check"], env)

        step("3. The gateway runs")
        log = open(work / "gateway.log", "w")
        gateway_proc = subprocess.Popen([gateway_cmd, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(port, gateway_proc)
        console.print(f"pypissh-gateway serve: listening on 127.0.0.1:{port} (log: {work.name}/gateway.log)")

        step("4. A legacy user runs `python setup.py register sdist upload` through pypissh")
        project = make_legacy_project(work / "Demo-Legacy", name="Demo-Legacy", version="1.0")
        user_home = work / "user"
        write_pypirc(user_home, "https://upload.pypi.org/legacy/", username="demo", password="my-old-password")
        known_hosts = work / "known_hosts"
        known_hosts.write_text(known_hosts_lines(home / "keys", port))
        ssh = (f"ssh -p {port} -i {work / 'id_ed25519'} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o UserKnownHostsFile={known_hosts} -o LogLevel=ERROR")
        result = run_legacy(project, ["register", "sdist", "upload"], ssh_command=ssh, home=user_home,
                            env={"PYPISSH_HOST": "127.0.0.1"})
        console.print("[dim]what the user sees (stdout, then the ssh session's stderr):[/dim]")
        print((result.stdout + result.stderr).rstrip(), flush=True)
        if result.returncode != 0:
            raise SystemExit("demo: the legacy upload failed")

        step("5. Where the file landed")
        (dist,) = list((project / "dist").glob("*.tar.gz"))
        local = hashlib.sha256(dist.read_bytes()).hexdigest()
        stored = upstream.files()
        for name, digest in stored.items():
            same = "identical to" if digest == local else "DIFFERENT from"
            console.print(f"{upstream.packages_dir.relative_to(work.parent)}/{name}: sha256 {digest[:16]}..., "
                          f"{same} the user's {dist.name}")
        if local not in stored.values():
            raise SystemExit("demo: the uploaded file did not arrive intact")
        run([migrate_cmd, "accounts", "show", "demo"], env)

        step("6. The user asks the gateway how to move to twine")
        guide = subprocess.run([*shlex.split(ssh), "-T", "-l", "submit", "127.0.0.1", "guide"],
                               capture_output=True, text=True, timeout=30)
        console.print(guide.stdout.rstrip(), markup=False)
    finally:
        if gateway_proc is not None and gateway_proc.poll() is None:
            gateway_proc.send_signal(signal.SIGTERM)
            try:
                gateway_proc.wait(15)
            except subprocess.TimeoutExpired:
                gateway_proc.kill()
        upstream.stop()
        if not args.keep:
            shutil.rmtree(work / "upstream" / "recordings", ignore_errors=True)
    console.rule("[bold green]done: the legacy upload went through the gateway and arrived intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())

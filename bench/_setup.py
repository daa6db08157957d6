"""What every benchmark shares: the peers, the sample uploads, the load generator and the tables.

    with BenchEnv("small_uploads", db="postgres") as env:
        accounts = env.add_accounts(32)
        gateway = env.start_gateway()                 # (a) `pypissh-gateway serve`, a real process
        openssh = env.start_openssh_mode()            # (e) sshd + grep on the replica's key file + the shim
        raw = env.start_raw_sshd(accounts)            # (d) sshd, `cat >/dev/null` as the ceiling
        uploads = make_uploads(env.workdir / "uploads", 100, 50_000, "s")
        run_ssh_batch([(ssh_argv(gateway, accounts[0]), u.request) for u in uploads], 8)
        https_upload(env.upstream, upload, twine_fields(upload))    # (c), one upload

Everything lives in `bench/out/<name>/` (git-ignored), readable by the local user `submit` that
sshd runs the OpenSSH-mode sessions and the raw `cat` as. The upstream is the test upstream (real
pypiserver behind TLS); its package folder is emptied between batches because pypiserver scans
the whole folder on every upload, which would otherwise make later batches slower than earlier ones.
"""

from __future__ import annotations

import asyncio
import base64
import compileall
import contextlib
import datetime as dt
import hashlib
import io
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import asyncssh

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.registry import Registry  # noqa: E402
from gateway.registry.migrate_db import upgrade  # noqa: E402
from gateway.registry.schema import accounts as accounts_table  # noqa: E402
from gateway.registry.schema import ssh_keys as keys_table  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.ssh import hostkeys  # noqa: E402
from gateway.sshkeys import parse_public_key  # noqa: E402
from gateway.tokens import TokenBox  # noqa: E402
from testbed import SOURCE_ROOT, postgres  # noqa: E402
from testbed.knownhosts import known_hosts_lines  # noqa: E402
from testbed.legacyrequests import make_sdist, python3_upload  # noqa: E402
from testbed.scaleout import Replica  # noqa: E402
from testbed.sshdutil import (  # noqa: E402
    SSHD,
    Sshd,
    ensure_submit_user,
    session_python,
)
from testbed.upstream import TlsPypiServer  # noqa: E402

OUT = ROOT / "bench" / "out"
SSH = shutil.which("ssh") or "ssh"
PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
SECRET = "the benchmark secret for stored tokens and long enough to derive a key"
SSH_USER = "submit"


# -- the machine ----------------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    ssh = subprocess.run([SSH, "-V"], capture_output=True, text=True).stderr.strip()
    info = {
        "cpu": f"{os.cpu_count()} x {_cpu_model()}",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**20} MiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssh": ssh,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for dist in ("asyncssh", "cryptography", "requests", "urllib3", "SQLAlchemy", "psycopg", "pypiserver",
                 "gunicorn"):
        info[dist] = _version(dist)
    if postgres.unavailable_reason() is None:
        import psycopg

        with psycopg.connect(postgres.ADMIN_URL) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    return info


def print_machine(info: dict[str, str]) -> None:
    print("## Machine\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print()


# -- statistics and tables ------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """`median (min-max)` of repeated runs."""
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (pasteable into RESULTS.md); printed and returned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [f"### {title}", "",
             "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def note(text: str) -> None:
    print(f"> {text}", flush=True)


# -- accounts and keys ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchAccount:
    name: str
    key_path: Path
    public_line: str

    @property
    def fingerprint(self) -> str:
        return parse_public_key(self.public_line).fingerprint


def write_user_key(path: Path, comment: str) -> str:
    """An ed25519 key pair in OpenSSH format (private 0600); returns the public line."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key())
    line = key.export_public_key().decode().strip()
    Path(str(path) + ".pub").write_text(line + "\n")
    return line


# -- sample uploads -------------------------------------------------------------------------------
@dataclass
class SampleUpload:
    """One unique sdist, and the legacy request that carries it (a file, for ssh's stdin)."""

    name: str
    version: str
    filename: str
    sdist: Path
    request: Path
    size: int


def make_uploads(folder: Path, count: int, size: int, tag: str) -> list[SampleUpload]:
    """`count` distinct sdists of about `size` bytes of incompressible data, each with its own
    project name (`bench-<tag>-<n>`), so the upstream never answers 409; prebuilt before timing."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    run = secrets.token_hex(3)
    made = []
    for index in range(count):
        name, version = f"bench-{tag}-{run}-{index}", "1.0"
        sdist = make_sdist(name, version, pad=os.urandom(max(0, size - 700)))
        filename = f"{name}-{version}.tar.gz"
        sdist_path = folder / filename
        sdist_path.write_bytes(sdist)
        request_path = folder / f"{name}.request"
        request_path.write_bytes(python3_upload(name, version, sdist, filename=filename))
        made.append(SampleUpload(name, version, filename, sdist_path, request_path, len(sdist)))
    return made


def write_large_request(path: Path, size: int, *, action: str = "file_upload") -> SampleUpload:
    """A legacy request for one sdist of `size` bytes, written in pieces (no whole copy in memory).

    The sdist is a tar.gz whose one big member is random bytes; the request is the Python 3
    distutils form around it, streamed to disk.
    """
    from testbed.legacyrequests import BOUNDARY, basic

    name, version = f"bench-large-{secrets.token_hex(3)}", "1.0"
    filename = f"{name}-{version}.tar.gz"
    sdist_path = path.with_suffix(".tar.gz")
    _write_big_sdist(sdist_path, name, version, size)
    content_size = sdist_path.stat().st_size
    md5, sha256, blake = hashlib.md5(), hashlib.sha256(), hashlib.blake2b()
    with open(sdist_path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            for hasher in (md5, sha256, blake):
                hasher.update(chunk)
    fields = [(":action", action), ("protocol_version", "1"), ("name", name), ("version", version),
              ("content", None), ("filetype", "sdist"), ("pyversion", ""), ("metadata_version", "1.0"),
              ("summary", "A large legacy package"), ("comment", ""),
              ("md5_digest", md5.hexdigest()), ("sha256_digest", sha256.hexdigest()),
              ("blake2_256_digest", blake.hexdigest())]
    sep = b"\r\n--" + BOUNDARY.encode()
    pieces_before, pieces_after = io.BytesIO(), io.BytesIO()
    target = pieces_before
    for key, value in fields:
        if value is None:
            target.write(sep + f'\r\nContent-Disposition: form-data; name="content"; filename="{filename}"'
                         .encode() + b"\r\n\r\n")
            target = pieces_after
            continue
        target.write(sep + f'\r\nContent-Disposition: form-data; name="{key}"'.encode() + b"\r\n\r\n"
                     + value.encode())
    pieces_after.write(sep + b"--\r\n")
    before, after = pieces_before.getvalue(), pieces_after.getvalue()
    length = len(before) + content_size + len(after)
    head = (f"POST /legacy/ HTTP/1.1\r\nAccept-Encoding: identity\r\nHost: upload.pypi.org\r\n"
            f"User-Agent: Python-urllib/3.11\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\nAuthorization: {basic('alice', 'old-password')}\r\n"
            "Connection: close\r\n\r\n").encode()
    with open(path, "wb") as out, open(sdist_path, "rb") as content:
        out.write(head + before)
        shutil.copyfileobj(content, out, 1 << 20)
        out.write(after)
    path.chmod(0o644)
    sdist_path.chmod(0o644)
    return SampleUpload(name, version, filename, sdist_path, path, content_size)


def _write_big_sdist(path: Path, name: str, version: str, size: int) -> None:
    import tarfile

    top = f"{name}-{version}"
    pkg_info = (f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\nSummary: A large legacy package\n"
                "Author: Old Timer\nLicense: UNKNOWN\n").encode()

    class RandomReader(io.RawIOBase):
        def __init__(self, total: int):
            self.left = total

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            n = min(len(buffer), self.left, 1 << 20)
            buffer[:n] = os.urandom(n)
            self.left -= n
            return n

    # Stored, not compressed (level 0): the payload is random anyway, and gzip -1 of 1 GiB of
    # random bytes costs a minute of CPU for nothing.
    with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=0) as archive:
        for member, data in ((f"{top}/PKG-INFO", pkg_info), (f"{top}/setup.py", b"from distutils.core import setup\n")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(f"{top}/data.bin")
        info.size = max(0, size - 2048)
        archive.addfile(info, io.BufferedReader(RandomReader(info.size), 1 << 20))


def twine_fields(upload: SampleUpload) -> list[tuple[str, str]]:
    """The form twine would send for this file: metadata read from the file itself, fresh digests.

    Built with the gateway's own reader so (a) and (c) send the upstream the same fields; only the
    transport differs.
    """
    from gateway.upload.artifact import inspect
    from gateway.upload.form import rebuild
    from gateway.upload.multipart import Digests, Form

    md5, sha256, blake = hashlib.md5(), hashlib.sha256(), hashlib.blake2b(digest_size=32)
    with open(upload.sdist, "rb") as handle:
        while chunk := handle.read(1 << 20):
            for hasher in (md5, sha256, blake):
                hasher.update(chunk)
        found = inspect(handle, upload.filename)
    digests = Digests(upload.size, md5.hexdigest(), sha256.hexdigest(), blake.hexdigest())
    return list(rebuild(Form(), found, digests).fields)


def https_upload(upstream: TlsPypiServer, upload: SampleUpload, fields: list[tuple[str, str]]) -> tuple[int, str]:
    """What twine does for one file: a fresh connection, a streamed multipart body with `content`
    last, `__token__` and the API token, the CA verified. Returns (status, reason)."""
    import requests
    from requests_toolbelt.multipart.encoder import MultipartEncoder

    with open(upload.sdist, "rb") as handle, requests.Session() as session:
        encoder = MultipartEncoder(fields=[*fields, ("content", (upload.filename, handle, "application/octet-stream"))])
        response = session.post(upstream.url, data=encoder, auth=("__token__", upstream.token),
                                headers={"Content-Type": encoder.content_type,
                                         "User-Agent": "twine/6 requests/2 (benchmark)"},
                                verify=str(upstream.ca_file), allow_redirects=False, timeout=600)
        response.close()
    return response.status_code, response.reason


# -- OpenSSH's sshd -------------------------------------------------------------------------------
def openssh_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "sshd must run as root"
    if not os.path.exists(SSHD):
        return "openssh-server is not installed"
    return None


def gateway_algorithms_for_sshd() -> str:
    """sshd_config lines offering the gateway's own algorithm lists (those this OpenSSH knows).

    OpenSSH 9.2 prefers sntrup761x25519 for key exchange, which costs its client about 90 ms of
    CPU per login on this machine against 13 ms for curve25519, the gateway's choice; with the
    same lists on both servers the OpenSSH-mode benchmark compares the servers, not key exchanges.
    """
    from gateway.ssh import algorithms

    def known(query: str, wanted: list[str]) -> str:
        have = set(subprocess.run([SSH, "-Q", query], capture_output=True, text=True, check=True).stdout.split())
        return ",".join(name for name in wanted if name in have)

    return (f"KexAlgorithms {known('kex', algorithms.kex_algorithms(False))}\n"
            f"Ciphers {known('cipher', algorithms.ciphers())}\n"
            f"MACs {known('mac', algorithms.mac_algorithms(False))}\n")


@dataclass
class Target:
    """Where a peer's ssh sessions go, and the process that serves them (for CPU and memory)."""

    label: str
    port: int
    known_hosts: Path
    pid: int | None = None


def ssh_argv(target: Target, account: BenchAccount, *command: str) -> list[str]:
    """The same OpenSSH client command line for every peer."""
    return [SSH, "-F", "/dev/null", "-T", "-p", str(target.port), "-i", str(account.key_path),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={target.known_hosts}", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=60", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-l", SSH_USER, "127.0.0.1", *command]


# -- the environment ------------------------------------------------------------------------------
class BenchEnv:
    """The upstream, the registry, host keys and accounts; peers started on demand; all stopped
    at the end."""

    def __init__(self, name: str, *, db: str = "auto", upstream_workers: int = 2, upstream_threads: int = 8):
        self.name = name
        self.workdir = OUT / name
        if db == "auto":
            db = "postgres" if postgres.unavailable_reason() is None else "sqlite"
        self.db = db
        self._upstream_workers = upstream_workers
        self._upstream_threads = upstream_threads
        self._stack = contextlib.ExitStack()
        self.accounts: list[BenchAccount] = []
        self.database_url = ""
        self.registry: Registry | None = None
        self.upstream: TlsPypiServer | None = None
        self.host_key_dir = self.workdir / "hostkeys"
        self._processes: list[Any] = []
        self.openssh_replica_pids: dict[str, int] = {}

    # lifecycle
    def __enter__(self) -> "BenchEnv":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        for folder in (OUT, self.workdir):
            folder.chmod(0o755)
        self.upstream = TlsPypiServer(self.workdir / "upstream", workers=self._upstream_workers,
                                      threads=self._upstream_threads)
        self.upstream.start()
        self._stack.callback(self.upstream.stop)
        (self.workdir / "upstream").chmod(0o755)
        self._warm_upstream()
        hostkeys.generate(self.host_key_dir)
        if self.db == "postgres":
            from testbed.pgserver import wait_ready

            wait_ready(60)  # the server is shared; a test elsewhere may be restarting it
            self.database_url = self._stack.enter_context(postgres.temporary_database("pypissh_bench"))
        else:
            self.database_url = f"sqlite:///{self.workdir / 'registry.sqlite3'}"
        upgrade(self.database_url)
        self.registry = Registry.from_url(self.database_url)
        self._stack.callback(self.registry.engine.dispose)
        (self.workdir / "keys").mkdir()
        (self.workdir / "keys").chmod(0o755)

    def _warm_upstream(self, uploads: int = 8) -> None:
        """A few sequential uploads first: passlib's lazy set-up in pypiserver is not thread-safe,
        and the first concurrent uploads a gunicorn worker sees can fail with a 500."""
        for upload in make_uploads(self.workdir / "warmup", uploads, 2000, "warm"):
            https_upload(self.upstream, upload, twine_fields(upload))
        self.clear_upstream()

    def close(self) -> None:
        for proc in reversed(self._processes):
            with contextlib.suppress(Exception):
                proc.stop()
        try:
            self._stack.close()
        except Exception as exc:  # e.g. PostgreSQL restarted by someone else: keep the real error
            note(f"clean-up failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    # registry
    def add_accounts(self, count: int, prefix: str = "user") -> list[BenchAccount]:
        """`count` accounts, each with its own ed25519 key and the upstream token stored."""
        assert self.registry is not None and self.upstream is not None
        sealed = TokenBox.from_settings(Settings(secret_key=SECRET)).seal(self.upstream.token)
        made = []
        for index in range(len(self.accounts), len(self.accounts) + count):
            name = f"{prefix}{index}"
            key_path = self.workdir / "keys" / name
            line = write_user_key(key_path, f"{name}@bench")
            self.registry.accounts.add_account(name, email=f"{name}@example.org")
            self.registry.keys.add_key(name, parse_public_key(line))
            self.registry.accounts.set_token_ciphertext(name, sealed)
            made.append(BenchAccount(name, key_path, line))
        self.accounts += made
        return made

    def new_registry(self, label: str) -> tuple[str, Registry]:
        """Another empty registry (database) beside the main one, with the same kind of database."""
        if self.db == "postgres":
            url = self._stack.enter_context(postgres.temporary_database(f"pypissh_bench_{label}"))
        else:
            url = f"sqlite:///{self.workdir / f'registry-{label}.sqlite3'}"
        upgrade(url)
        registry = Registry.from_url(url)
        self._stack.callback(registry.engine.dispose)
        return url, registry

    def copy_accounts(self, registry: Registry, accounts: Sequence[BenchAccount]) -> None:
        """Register the same accounts and keys (and the upstream token) in another registry."""
        assert self.upstream is not None
        sealed = TokenBox.from_settings(Settings(secret_key=SECRET)).seal(self.upstream.token)
        for account in accounts:
            registry.accounts.add_account(account.name, email=f"{account.name}@example.org")
            registry.keys.add_key(account.name, parse_public_key(account.public_line))
            registry.accounts.set_token_ciphertext(account.name, sealed)

    def add_filler_keys(self, count: int, batch: int = 5000, registry: Registry | None = None) -> None:
        """`count` more registered keys (one account each) that never log in: a registry of a
        realistic size. Inserted in bulk; the login lookup must not care how many there are."""
        from sqlalchemy import func, select

        registry = registry or self.registry
        assert registry is not None
        now = dt.datetime.now(dt.timezone.utc)
        done = 0
        with registry.engine.begin() as conn:
            first_id = (conn.execute(select(func.max(accounts_table.c.id))).scalar() or 0) + 1
        while done < count:
            n = min(batch, count - done)
            ids = range(first_id + done, first_id + done + n)
            account_rows, key_rows = [], []
            for account_id in ids:
                blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)
                fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
                account_rows.append(dict(id=account_id, name=f"filler{account_id}", disabled=False, exempt=False,
                                         created_at=now))
                key_rows.append(dict(account_id=account_id, fingerprint=fingerprint, algorithm="ssh-ed25519",
                                     bits=None, public_key="ssh-ed25519 " + base64.b64encode(blob).decode(),
                                     weak=False, source="admin", created_at=now))
            with registry.engine.begin() as conn:
                conn.execute(accounts_table.insert(), account_rows)
                conn.execute(keys_table.insert(), key_rows)
            done += n
        if self.db == "postgres":
            with registry.engine.begin() as conn:
                conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('accounts', 'id'), "
                                     "(SELECT max(id) FROM accounts))")
                conn.exec_driver_sql("ANALYZE")

    def key_count(self, registry: Registry | None = None) -> int:
        from sqlalchemy import func, select

        registry = registry or self.registry
        assert registry is not None
        with registry.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(keys_table)).scalar()

    # peers
    def gateway_settings(self, **overrides: Any) -> dict[str, Any]:
        assert self.upstream is not None
        settings: dict[str, Any] = dict(
            database_url=self.database_url, upstream_url=self.upstream.url,
            index_url=self.upstream.simple_url,
            upstream_ca_bundle=str(self.upstream.ca_file), host_key_dir=str(self.host_key_dir),
            secret_key=SECRET, public_host="127.0.0.1",
            # One load generator on one address: the per-source limits meant for the internet
            # would refuse it. Raised alike for sshd (MaxStartups).
            max_startups=2000, max_startups_per_source=2000, max_sessions_per_account=1000,
            failed_login_limit=0,
        )
        settings.update(overrides)
        return settings

    def start_gateway(self, name: str = "gateway", *, workers: int = 1, **overrides: Any) -> Target:
        """(a): `pypissh-gateway serve` as its own process; returns its target (pid = the serving
        process, or the supervisor with several workers)."""
        replica = Replica(self.workdir, self.gateway_settings(**overrides), name=name,
                          extra_args=["--workers", str(workers)] if workers > 1 else [])
        replica.start(timeout=60)
        self._processes.append(replica)
        known = self.workdir / f"{name}_known_hosts"
        known.write_text(known_hosts_lines(self.host_key_dir, replica.ssh_port))
        return Target(f"(a) gateway{' x' + str(workers) if workers > 1 else ''}", replica.ssh_port, known,
                      replica.pid)

    def start_openssh_mode(self) -> Target:
        """(e): the same handler behind OpenSSH's sshd: the replica keeps `authorized_keys_file`,
        AuthorizedKeysCommand is `grep -F %k` on it, and the forced command runs the shim as a
        file with `python -I -S`, which hands each session to that replica over its UNIX socket.
        The target's pid is sshd's; `openssh_replica_pids[label]` is the replica's."""
        reason = openssh_unavailable()
        if reason:
            raise RuntimeError(reason)
        if self.db != "postgres":
            raise RuntimeError("the OpenSSH mode's replica and sessions share the registry: use --db postgres")
        ensure_submit_user()
        # The sessions' user cannot write bytecode into this tree; an installed package has it
        # (pip compiles it), so give the per-login programs the same start.
        compileall.compile_dir(str(SOURCE_ROOT / "gateway"), quiet=1)
        label = "(e) sshd + key file + shim"
        folder = self.workdir / "openssh-keyfile"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
        keys = folder / "authorized_keys"
        replica = Replica(folder, self.gateway_settings(
            openssh_mode=True, shim_socket=str(folder / "shim.sock"), shim_user=SSH_USER,
            reminder_repeat_days=0.0, authorized_keys_file=str(keys), shim_python=str(session_python())),
            name="openssh-replica")
        replica.start(timeout=60)
        self._processes.append(replica)
        self.openssh_replica_pids[label] = replica.pid
        deadline = time.monotonic() + 30
        while not keys.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sshd = Sshd(folder, (f"AuthorizedKeysFile none\nAuthorizedKeysCommand /usr/bin/grep -F -- %k {keys}\n"
                             "AuthorizedKeysCommandUser root\n" + gateway_algorithms_for_sshd()), "keyfile").start()
        self._processes.append(sshd)
        return Target(label, sshd.port, sshd.known_hosts, sshd.pid)

    def start_raw_sshd(self, accounts: Sequence[BenchAccount], *, gateway_algorithms: bool = False) -> Target:
        """(d): sshd with a plain authorized_keys file, where `cat >/dev/null` is the ceiling of
        what an SSH session can take in on this machine. `gateway_algorithms`: offer the gateway's
        algorithm lists, as peer (e) does, so that logins cost the same key exchange."""
        reason = openssh_unavailable()
        if reason:
            raise RuntimeError(reason)
        ensure_submit_user()
        folder = self.workdir / "rawsshd"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)
        authorized = folder / "authorized_keys"
        authorized.write_text("".join(account.public_line + "\n" for account in accounts))
        authorized.chmod(0o644)
        algorithms = gateway_algorithms_for_sshd() if gateway_algorithms else ""
        sshd = Sshd(folder, f"AuthorizedKeysFile {authorized}\n" + algorithms, "raw").start()
        self._processes.append(sshd)
        return Target("(d) sshd cat", sshd.port, sshd.known_hosts, sshd.pid)

    @property
    def upstream_pid(self) -> int | None:
        proc = getattr(self.upstream, "_proc", None)
        return proc.pid if proc is not None else None

    def cpu_meter(self, **trees: int | None) -> "CpuMeter":
        """A CpuMeter for the upstream, PostgreSQL (when used) and the given process trees."""
        groups = {"postgresql": self.database_backends} if self.db == "postgres" else {}
        return CpuMeter({**trees, "upstream": self.upstream_pid}, groups)

    def database_backends(self) -> list[int]:
        """PostgreSQL's server processes for this benchmark's database (other databases on the
        same server belong to other work). Connections that open and close between two looks (the
        OpenSSH mode's per-session processes) are not seen."""
        import psycopg

        name = self.database_url.rsplit("/", 1)[-1]
        with psycopg.connect(postgres.ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
        return [row[0] for row in rows]

    def clear_upstream(self) -> None:
        """Empty pypiserver's folder and the request records (see the module notes)."""
        assert self.upstream is not None
        for path in self.upstream.packages_dir.iterdir():
            if path.is_file():
                path.unlink()
        self.upstream.clear_recordings()


# -- the load generator ---------------------------------------------------------------------------
@dataclass
class Result:
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class Batch:
    """One closed-loop run at a fixed concurrency."""

    results: list[Result] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float = 0.0  # the load generator's CPU seconds: its children (ssh) and itself

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    @property
    def rate(self) -> float:
        return len(self.ok) / self.wall if self.wall else 0.0

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


def _cpu_now() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def answered_200(stdout: bytes) -> bool:
    return stdout.startswith(b"HTTP/1.0 200") or stdout.startswith(b"HTTP/1.1 200")


async def _ssh_session(argv: list[str], stdin_path: Path | None, check: Callable[[int, bytes], bool]) -> Result:
    started = time.monotonic()
    stdin = open(stdin_path, "rb") if stdin_path is not None else subprocess.DEVNULL
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await proc.communicate()
    finally:
        if stdin_path is not None:
            stdin.close()
    seconds = time.monotonic() - started
    ok = check(proc.returncode, stdout)
    detail = "" if ok else (f"status {proc.returncode}: " + (stdout[:120] + b" | " + stderr[-200:]).decode("latin-1"))
    return Result(ok, seconds, detail)


def run_ssh_batch(jobs: Sequence[tuple[list[str], Path | None]], concurrency: int,
                  check: Callable[[int, bytes], bool] = lambda status, out: status == 0 and answered_200(out),
                  ) -> Batch:
    """Run every (argv, stdin file) through real `ssh` processes, `concurrency` at a time."""

    async def main() -> Batch:
        queue = list(reversed(jobs))
        batch = Batch()

        async def worker() -> None:
            while queue:
                argv, stdin_path = queue.pop()
                batch.results.append(await _ssh_session(argv, stdin_path, check))

        cpu = _cpu_now()
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        batch.wall = time.monotonic() - started
        batch.client_cpu = _cpu_now() - cpu
        return batch

    return asyncio.run(main())


def run_thread_batch(calls: Sequence[Callable[[], bool]], concurrency: int) -> Batch:
    """Run blocking calls (each returns ok) on `concurrency` threads, timing each."""
    batch = Batch()
    lock = threading.Lock()
    queue = list(reversed(calls))

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                call = queue.pop()
            started = time.monotonic()
            try:
                ok, detail = call(), ""
            except Exception as exc:
                ok, detail = False, repr(exc)
            with lock:
                batch.results.append(Result(bool(ok), time.monotonic() - started, detail))

    cpu = _cpu_now()
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    batch.wall = time.monotonic() - started
    batch.client_cpu = _cpu_now() - cpu
    return batch


def process_cpu(pid: int | None) -> float:
    """CPU seconds of a process and all its descendants so far (live ones, via psutil)."""
    if pid is None:
        return 0.0
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            # children_*: descendants that have exited and were waited for (sshd's sessions).
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class CpuMeter:
    """Where the machine's CPU went during a block: named process trees, our own children (the
    ssh clients), and the rest of the machine (other users' work and short-lived processes)."""

    def __init__(self, trees: dict[str, int | None], groups: dict[str, Callable[[], list[int]]] | None = None):
        self.trees = {label: pid for label, pid in trees.items() if pid is not None}
        self.groups = groups or {}  # label -> the pids to count now (e.g. our database's backends)
        self.used: dict[str, float] = {}
        self.wall = 0.0

    def _snapshot(self) -> dict[str, float]:
        import psutil

        snap = {label: process_cpu(pid) for label, pid in self.trees.items()}
        for label, pids in self.groups.items():
            total = 0.0
            for pid in pids():
                try:
                    times = psutil.Process(pid).cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
            snap[label] = total
        snap["load generator"] = _cpu_now()
        times = psutil.cpu_times()
        snap["machine"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return snap

    def __enter__(self) -> "CpuMeter":
        self._before = self._snapshot()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        after = self._snapshot()
        self.wall = time.monotonic() - self._started
        self.used = {label: after[label] - self._before[label] for label in after}
        known = sum(value for label, value in self.used.items() if label != "machine")
        self.used["rest of machine"] = max(0.0, self.used["machine"] - known)

    def per_item(self, count: int) -> dict[str, float]:
        """CPU milliseconds per item, by label."""
        return {label: value * 1000 / max(1, count) for label, value in self.used.items()}

    def busy(self) -> float:
        """The machine's busy cores, averaged over the block."""
        return self.used.get("machine", 0.0) / self.wall if self.wall else 0.0


# -- profiling ------------------------------------------------------------------------------------
class Profiler:
    """py-spy sampling one process (and its subprocesses) while a block runs; writes the raw
    collapsed stacks and returns the hottest frames by own time."""

    def __init__(self, pid: int, out: Path, rate: int = 250, gil: bool = True):
        self.pid = pid
        self.out = out
        self.rate = rate
        # --gil: only the thread holding the GIL, i.e. Python CPU time; without it py-spy also
        # counts threads it cannot tell are blocked in C (socket waits, database waits).
        self.gil = gil
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Profiler":
        spy = shutil.which("py-spy") or str(Path(sys.prefix) / "bin" / "py-spy")
        argv = [spy, "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.out),
                "--rate", str(self.rate), "--subprocesses", "--nonblocking"]
        if self.gil:
            argv.append("--gil")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def summary(self, top: int = 25) -> str:
        """Own-time and total-time leaders from the collapsed stacks."""
        own: dict[str, int] = {}
        total: dict[str, int] = {}
        samples = 0
        if not self.out.exists():
            return "(no profile written)"
        for line in self.out.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            samples += count
            frames = stack.split(";")
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for frame in set(frames[1:]):
                total[frame] = total.get(frame, 0) + count
        if not samples:
            return "(no samples)"
        lines = [f"{samples} samples", "", "own time:"]
        for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {100 * count / samples:5.1f}%  {frame}")
        lines += ["", "total time:"]
        for frame, count in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {100 * count / samples:5.1f}%  {frame}")
        return "\n".join(lines)

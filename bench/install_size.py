"""The size of a core install: the wheel and its dependencies in a fresh virtualenv, made five ways.

Builds the wheel from this checkout, then for each way of making the virtualenv measures it with
`du` twice: disk blocks (`du -sm`) and file content (`du -sm --apparent-size`, what a container
layer or a tarball of the virtualenv holds). The `--no-compile` ways are measured again after
every module of both commands has been imported once with bytecode written (what such a
virtualenv holds once used, when its user may write to it). The fifth way is the README's: no
bytecode from pip, then `pypissh-gateway bytecode` for the modules the commands import. Then the
largest packages.

Needs the package index (pip resolves the dependencies as of today).

    python bench/install_size.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import ROOT, machine, note, print_machine, print_table  # noqa: E402

HOST_PYTHON = "python3"
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"

# Imports every module of both packages, as running every command would (gateway/ops/bytecode.py
# says which: not the programs, nor the PNG chart's module without the [report] extra).
IMPORT_ALL = "from gateway.ops.bytecode import import_everything; import_everything()"

WAYS = [
    ("`python3 -m venv V && V/bin/pip install W` (pip's defaults)", True, ()),
    ("the same with `pip install --no-compile`", True, ("--no-compile",)),
    ("`python3 -m venv --without-pip V && python3 -m pip --python V/bin/python install W`", False, ()),
    ("the same with `--no-compile`", False, ("--no-compile",)),
]
BYTECODE_WAY = "the same, then `V/bin/pypissh-gateway bytecode` (the README's recipe)"


def du(path: Path, *flags: str) -> int:
    out = subprocess.run(["du", "-sm", *flags, str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def sizes(path: Path) -> str:
    return f"{du(path)} MB ({du(path, '--apparent-size')} MB)"


def make_venv(folder: Path, wheel: Path, with_pip: bool, flags: tuple[str, ...]) -> None:
    subprocess.run([HOST_PYTHON, "-m", "venv", *(() if with_pip else ("--without-pip",)), str(folder)], check=True)
    installer = [str(folder / "bin" / "pip")] if with_pip else [HOST_PYTHON, "-m", "pip", "--python",
                                                                  str(folder / "bin" / "python")]
    subprocess.run([*installer, "install", "-q", "--disable-pip-version-check", *flags, str(wheel)],
                   check=True, stderr=subprocess.DEVNULL)


def import_everything(folder: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}  # no PYTHONDONTWRITEBYTECODE
    subprocess.run([str(folder / "bin" / "python"), "-c", IMPORT_ALL], check=True, cwd="/", env=env)


def main() -> None:
    print_machine(machine())
    with tempfile.TemporaryDirectory(prefix="install-size-") as scratch:
        work = Path(scratch)
        subprocess.run([sys.executable, "-m", "build", "-q", "--wheel", "-o", str(work / "dist"), str(ROOT)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wheel = next((work / "dist").glob("*.whl"))
        rows = []
        for index, (how, with_pip, flags) in enumerate(WAYS):
            folder = work / f"venv{index}"
            make_venv(folder, wheel, with_pip, flags)
            installed = sizes(folder)
            used = "same"
            if flags:
                import_everything(folder)
                used = sizes(folder)
            rows.append((how, installed, used))
        folder = work / "venv-bytecode"
        make_venv(folder, wheel, False, ("--no-compile",))
        subprocess.run([str(folder / "bin" / "pypissh-gateway"), "bytecode"], check=True, cwd="/",
                       env={"PATH": "/usr/bin:/bin", "HOME": str(folder)}, stdout=subprocess.DEVNULL)
        bytecode = sizes(folder)
        import_everything(folder)
        rows.append((BYTECODE_WAY, bytecode, sizes(folder)))
        print_table("Core virtualenv: disk (file content)", ["how it is made (W: the wheel)", "installed",
                                                             "after every module is imported"], rows)
        site = work / "venv2" / SITE
        packages = sorted(((du(p, "--apparent-size"), p.name) for p in site.iterdir()
                           if p.is_dir() and not p.name.endswith(".dist-info") and p.name != "__pycache__"),
                          reverse=True)
        print_table("Largest packages (pip-less, with bytecode; file content)", ["package", "MB"],
                    [(name, size) for size, name in packages[:8]])
        tools = sum(du(work / "venv0" / SITE / name, "--apparent-size") for name in ("pip", "setuptools"))
        note(f"pip and setuptools in a virtualenv made with pip: {tools} MB")


if __name__ == "__main__":
    main()

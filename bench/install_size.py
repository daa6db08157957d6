"""The size of a core install: the wheel and its dependencies in a fresh virtualenv, as the README
installs it (`python3 -m venv V && V/bin/pip install -c requirements/constraints.txt W`).

Builds the wheel from this checkout, installs it with the locked constraints, and measures the
virtualenv with `du` twice: disk blocks (`du -sm`) and file content (`du -sm --apparent-size`,
what a container layer or a tarball of the virtualenv holds). Then the largest packages.

Needs the package index (or pip's configured wheel folders) for the dependencies.

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
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


def du(path: Path, *flags: str) -> int:
    out = subprocess.run(["du", "-sm", *flags, str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def sizes(path: Path) -> str:
    return f"{du(path)} MB ({du(path, '--apparent-size')} MB)"


def make_venv(folder: Path, requirement: str) -> None:
    subprocess.run([HOST_PYTHON, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(folder / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-c",
                    str(CONSTRAINTS), requirement], check=True, stderr=subprocess.DEVNULL)


def main() -> None:
    print_machine(machine())
    with tempfile.TemporaryDirectory(prefix="install-size-") as scratch:
        work = Path(scratch)
        subprocess.run([sys.executable, "-m", "build", "-q", "--wheel", "-o", str(work / "dist"), str(ROOT)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wheel = next((work / "dist").glob("*.whl"))
        rows = []
        for extra in ("", "[postgres]"):
            folder = work / f"venv{extra.strip('[]')}"
            make_venv(folder, f"{wheel}{extra}")
            rows.append((f"W{extra}", sizes(folder)))
        print_table("Virtualenv: disk (file content)", ["installed (W: the wheel)", "size"], rows)
        site = work / "venv" / SITE
        packages = sorted(((du(p, "--apparent-size"), p.name) for p in site.iterdir()
                           if p.is_dir() and not p.name.endswith(".dist-info") and p.name != "__pycache__"),
                          reverse=True)
        print_table("Largest packages (file content)", ["package", "MB"],
                    [(name, size) for size, name in packages[:8]])
        tools = sum(du(site / name, "--apparent-size") for name in ("pip", "setuptools") if (site / name).exists())
        note(f"pip (and setuptools) in the virtualenv: {tools} MB")


if __name__ == "__main__":
    main()

"""Check what the sdist and the wheel built by ``python -m build`` contain.

Usage: ``python .ci/check_dist.py DIST_DIR [REPO_ROOT]``.  Exits non-zero with one line per
problem.  Run by ``.ci/steps/10-wheel.sh``.

Wheel: the package's modules (every ``src/milo_pack/**/*.py`` of the sdist), the compiled kernels
and their type stub, ``py.typed``, the license and the ``milo-pack`` entry point; no Cython
source, no generated C, no tests or docs; the kernels' ELF library stripped of debug
information and of its symbol table (Linux).
Sdist: everything to build and to run the tests and docs from the unpacked tree (every tracked
file under ``tests/``, ``docs/``, ``benchmarks/`` and ``src/`` when the repository is a git
checkout), and no built or generated files.
"""

from __future__ import annotations

import fnmatch
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath


def elf_sections(data: bytes) -> list[str]:
    """Section names of a 64-bit little-endian ELF file (enough for our Linux builds)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
               for i in range(shnum)]
    strtab_offset = headers[shstrndx][4]
    names = []
    for header in headers:
        start = strtab_offset + header[0]
        names.append(data[start:data.index(b"\0", start)].decode())
    return names


def check_wheel(path: Path, sdist_modules: set[str]) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        package = [n for n in names if n.startswith("milo_pack/")]
        for pattern, what in (("*.pyx", "Cython source"), ("*.c", "generated C"),
                              ("*.h", "C header"), ("tests/*", "tests"), ("docs/*", "docs")):
            bad = [n for n in names if fnmatch.fnmatch(n, pattern)]
            if bad:
                problems.append(f"wheel holds {what}: {bad[:3]}")
        for needed in ("milo_pack/__init__.py", "milo_pack/py.typed", "milo_pack/_arrays.pyi",
                       "milo_pack/cli.py", "milo_pack/bench/__main__.py"):
            if needed not in names:
                problems.append(f"wheel lacks {needed}")
        missing = sorted(sdist_modules - set(package))
        if missing:
            problems.append(f"wheel lacks modules of the sdist: {missing[:5]}")
        if not any(n.endswith("dist-info/licenses/LICENSE") for n in names):
            problems.append("wheel lacks the license file")
        entry_points = [n for n in names if n.endswith("dist-info/entry_points.txt")]
        if not entry_points or "milo-pack = milo_pack.cli:main" not in wheel.read(
                entry_points[0]).decode():
            problems.append("wheel lacks the milo-pack console script")
        libraries = [n for n in package if PurePosixPath(n).name.startswith("_arrays.")
                     and n.endswith((".so", ".pyd"))]
        if len(libraries) != 1:
            problems.append(f"wheel must hold one compiled _arrays library, not {libraries}")
        for name in libraries:
            sections = elf_sections(wheel.read(name))
            debug = [s for s in sections if s.startswith((".debug", ".zdebug")) or s == ".symtab"]
            if debug:
                problems.append(f"{name} is not stripped: {debug[:4]}")
            print(f"wheel: {name} {wheel.getinfo(name).file_size:,} bytes, "
                  f"{'ELF stripped' if sections and not debug else 'not ELF'}")
        print(f"wheel: {len(names)} files, {path.stat().st_size:,} bytes")
    return problems


def tracked_files(root: Path) -> set[str]:
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "src", "tests", "docs",
                              "benchmarks", "README.md", "LICENSE", "pyproject.toml",
                              "setup.py"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return set()
    return {line for line in out.splitlines() if line and not line.endswith((".so", ".c"))}


def check_sdist(path: Path, root: Path | None) -> tuple[list[str], set[str]]:
    problems = []
    with tarfile.open(path) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {n[len(top) + 1:] for n in sdist.getnames() if n.startswith(top + "/")}
    for needed in ("LICENSE", "README.md", "pyproject.toml", "setup.py",
                   "src/milo_pack/_arrays.pyx", "src/milo_pack/_arrays.pyi",
                   "src/milo_pack/py.typed", "tests/__init__.py", "tests/common.py",
                   "docs/FORMAT.md", "docs/ARCHITECTURE.md", "docs/SECURITY.md"):
        if needed not in names:
            problems.append(f"sdist lacks {needed}")
    bad = [n for n in names if n.endswith((".so", ".pyd", ".pyc", ".c"))]
    if bad:
        problems.append(f"sdist holds built or generated files: {bad[:5]}")
    if root is not None:
        missing = sorted(tracked_files(root) - names)
        if missing:
            problems.append(f"sdist lacks tracked files: {missing[:8]}")
    modules = {n[len("src/"):] for n in names
               if n.startswith("src/milo_pack/") and n.endswith((".py", ".pyi", "py.typed"))}
    print(f"sdist: {len(names)} files, {path.stat().st_size:,} bytes "
          f"({sum(n.startswith('tests/') for n in names)} under tests/)")
    return problems, modules


def main(argv: list[str]) -> int:
    dist = Path(argv[1])
    root = Path(argv[2]) if len(argv) > 2 else None
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        print(f"expected one sdist and one wheel in {dist}: {sdists + wheels}")
        return 1
    problems, modules = check_sdist(sdists[0], root)
    problems += check_wheel(wheels[0], modules)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("dist contents: OK" if not problems else f"dist contents: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

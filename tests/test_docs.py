"""Every code block of the README and of ``docs/*.md`` runs as written.

A block's language tag says what is done with it:

- ``python``: run in a fresh interpreter (consecutive blocks in one, each in its own namespace),
  in a temporary directory shared by the document's blocks (so a file written by one block is
  there for the next), in document order.  A line ``print(...)  # -> text`` also checks what it
  prints: ``...`` in ``text`` matches anything.
- ``bash``: every line is a ``milo-pack ...`` (or ``python -m milo_pack ...``) command, run by
  the command line's ``main`` in the same directory; it must exit 0 (``diff``: 0 or 1, its
  "differences found") and print something on stdout.
- ``json``: must parse.
- ``python dask``, ``python ray``, ``python spark``, ``python mlflow``: run as written by
  ``tests/engines/test_readme_engines.py`` against the engine (``.ci/steps/30-engines.sh``, with
  ``MILO_ENGINES=1``); here they must at least compile.
- ``py``, ``sh``, ``text``: illustrative, not run (code that needs a user's own package, package
  installs, long benchmarks, file layouts).  They are listed in :data:`ILLUSTRATIVE` with the
  reason, so that marking a block illustrative is a visible decision; the tests below fail on an
  untagged block or on a tag not listed here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")),
             "benchmarks/README.md"]
RUN = {"python", "bash", "json"}
NOT_RUN = {"py", "sh", "text"}
# Run by tests/engines/test_readme_engines.py, in the CI step that installs the engines.
ENGINE_RUN = {"python dask", "python ray", "python spark", "python mlflow"}

# (document, first line of the block) -> why it is not run.
ILLUSTRATIVE = {
    ("README.md", "pip install '.[bench]'"): "installs packages (CI runs these commands)",
    ("README.md", 'milo_pack.untrusted_types("mine.milo")'): "needs the user's own package",
    ("docs/FORMAT.md", "manifest.json            UTF-8 JSON"): "file layout",
    ("docs/FORMAT.md", "chunk 0 stored bytes | chunk 1"): "byte layout",
    ("benchmarks/README.md", "python -m milo_pack.bench"): "runs the benchmark (minutes)",
}

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
_CHECKED_PRINT = re.compile(r"^(\s*)print\((.*)\)\s*#\s*->\s*(.*?)\s*$")
_TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    lang: str
    code: str

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line} ({self.lang or 'untagged'})"


def blocks_of(document: str) -> list[Block]:
    text = (ROOT / document).read_text(encoding="utf-8")
    return [Block(document, text.count("\n", 0, m.start()) + 1, m[1].strip(), m[2])
            for m in _FENCE.finditer(text)]


ALL_BLOCKS = [block for document in DOCUMENTS for block in blocks_of(document)]


def _illustrative_key(block: Block) -> tuple[str, str] | None:
    for document, start in ILLUSTRATIVE:
        if document == block.document and block.first_line.startswith(start):
            return document, start
    return None


def test_every_block_is_tagged():
    bad = [b.where for b in ALL_BLOCKS if b.lang not in RUN | NOT_RUN | ENGINE_RUN]
    assert not bad, f"tag these blocks (python/bash/json run; py/sh/text do not): {bad}"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.lang in ENGINE_RUN],
                         ids=lambda b: b.where)
def test_engine_blocks_compile_and_are_run_by_the_engine_tests(block):
    compile(block.code, block.where, "exec")
    engines = (ROOT / "tests" / "engines" / "test_readme_engines.py").read_text(encoding="utf-8")
    assert block.document == "README.md" and block.lang.split()[1] in engines


def test_illustrative_blocks_are_the_listed_ones():
    """The blocks not run are exactly those listed, each with its reason."""
    not_run = {b.where: _illustrative_key(b) for b in ALL_BLOCKS if b.lang in NOT_RUN}
    unlisted = [where for where, key in not_run.items() if key is None]
    assert not unlisted, f"illustrative blocks not listed in ILLUSTRATIVE: {unlisted}"
    stale = set(ILLUSTRATIVE) - set(not_run.values())
    assert not stale, f"ILLUSTRATIVE lists blocks that are gone or now run: {stale}"
    listed_but_run = [b.where for b in ALL_BLOCKS if b.lang in RUN and _illustrative_key(b)]
    assert not listed_but_run


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.lang in NOT_RUN],
                         ids=lambda b: b.where)
def test_illustrative_block(block):
    """Listed in the test report as skipped, with the reason the table gives."""
    key = _illustrative_key(block)
    assert key is not None, f"{block.where} is not listed in ILLUSTRATIVE"
    pytest.skip(f"{block.where} not run: {ILLUSTRATIVE[key]}")


def test_readme_examples_exist():
    readme = [b for b in ALL_BLOCKS if b.document == "README.md"]
    assert sum(b.lang == "python" for b in readme) >= 4
    assert sum(b.lang == "bash" for b in readme) >= 1


# --------------------------------------------------------------------------------------------
# Running the blocks of one document in order
# --------------------------------------------------------------------------------------------

_PRELUDE = '''
import re as _re
def _milo_doc_check(_expected, *args):
    text = " ".join(str(a) for a in args)
    print(text)
    pattern = ".*".join(_re.escape(part.strip()) for part in _expected.split("..."))
    if not _re.fullmatch(pattern, text.strip(), flags=_re.S):
        raise AssertionError(f"printed {text!r}, the document says {_expected!r}")
'''


def instrumented(code: str) -> str:
    """The block with each ``print(...)  # -> text`` turned into a checked print."""
    lines = []
    for line in code.splitlines():
        match = _CHECKED_PRINT.match(line)
        if match:
            indent, args, expected = match.groups()
            line = f"{indent}_milo_doc_check({expected!r}, {args})"
        lines.append(line)
    return _PRELUDE + "\n".join(lines) + "\n"


def _env() -> dict[str, str]:
    # The interpreter and milo_pack the tests use, in the child too.
    env = dict(os.environ)
    import milo_pack

    package_root = str(Path(milo_pack.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]))
    env.setdefault("MPLBACKEND", "Agg")
    return env


_DRIVER = """
import sys, traceback
blocks = {blocks!r}
for where, code in blocks:
    try:
        exec(compile(code, where, "exec"), {{"__name__": "__main__"}})
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: {{where}}", file=sys.stderr)
        sys.exit(1)
"""


def run_python(blocks: list[Block], cwd: Path) -> None:
    """Run consecutive python blocks in one fresh interpreter, each in its own namespace."""
    script = _DRIVER.format(blocks=[(b.where, instrumented(b.code)) for b in blocks])
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=_env(),
                            capture_output=True, text=True, timeout=_TIMEOUT)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def commands(block: Block) -> list[list[str]]:
    """The block's commands as ``milo-pack`` argument lists (without the program name)."""
    out = []
    for raw in block.code.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        args = shlex.split(line)
        if args[0] == "milo-pack":
            args = args[1:]
        elif args[:3] == ["python", "-m", "milo_pack"]:
            args = args[3:]
        else:
            raise AssertionError(f"{block.where}: not a milo-pack command: {line!r} "
                                 "(tag the block sh if it is not meant to run)")
        out.append(args)
    return out


def run_bash(block: Block, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from milo_pack import cli

    monkeypatch.chdir(cwd)
    for args in commands(block):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = cli.main(args)
            except SystemExit as exc:  # --version exits like argparse's own action
                status = int(exc.code or 0)
        allowed = {0, 1} if args[:1] == ["diff"] else {0}
        shown = "milo-pack " + " ".join(args)
        assert status in allowed, (f"{block.where}: `{shown}` exited {status}:\n"
                                   f"{stdout.getvalue()}\n{stderr.getvalue()}")
        assert stdout.getvalue().strip(), f"{block.where}: `{shown}` printed nothing"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_blocks_run(document, tmp_path, monkeypatch):
    # Blocks run in an empty directory, as a reader's would; the repository's committed
    # fixtures are visible under their repository paths (docs load the compatibility corpus).
    (tmp_path / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    pending: list[Block] = []
    ran = 0
    for block in [*blocks_of(document), None]:
        if block is not None and block.lang == "python":
            pending.append(block)
            continue
        if pending:  # a run of python blocks ends: run it
            run_python(pending, tmp_path)
            ran += len(pending)
            pending = []
        if block is None:
            break
        if block.lang == "bash":
            run_bash(block, tmp_path, monkeypatch)
            ran += 1
        elif block.lang == "json":
            json.loads(block.code)
            ran += 1
    assert ran == sum(b.lang in RUN for b in blocks_of(document))


def test_checked_print_fails_on_a_wrong_claim(tmp_path):
    """The ``# ->`` check can fail: a stale comment is caught, and names its block."""
    block = Block("test", 1, "python", "print(1 + 1)  # -> 3\n")
    with pytest.raises(AssertionError, match="the document says"):
        run_python([block], tmp_path)
    run_python([Block("test", 1, "python", "print('a', 'b c d')  # -> a ... d\n")], tmp_path)


def test_bash_blocks_refuse_other_commands():
    with pytest.raises(AssertionError, match="not a milo-pack command"):
        commands(Block("test", 1, "bash", "rm -rf /tmp/x\n"))

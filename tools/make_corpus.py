"""Regenerate the compatibility corpus: build each old environment, write its fixtures.

    python tools/make_corpus.py                     # every environment of tools/oldenv.py
    python tools/make_corpus.py sk15 sk16           # some of them
    python tools/make_corpus.py --baseline /work/baseline/src --label milo-f68509a-
                                                    # fixtures written by earlier milo_pack code
    python tools/make_corpus.py --peers DIR ...     # also pickle/skops copies for the table

Writes ``tests/compat/corpus/<label>sklearn-<version>/``.  Fixtures are kept forever: regenerate
a directory only when adding one, never to make a failing test pass (a fixture that stopped
loading is exactly what the corpus test is for).  The baseline run uses the interpreter running
this script (today's scikit-learn) with ``PYTHONPATH`` pointing at the earlier code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oldenv  # noqa: E402

CORPUS = oldenv.REPO / "tests" / "compat" / "corpus"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"environments (default: {list(oldenv.ENVS)})")
    parser.add_argument("--root", help="directory holding the venvs")
    parser.add_argument("--peers", type=Path, help="also write pickle and skops files here")
    parser.add_argument("--baseline", type=Path,
                        help="src/ directory of earlier milo_pack code: write its fixtures with "
                             "this interpreter instead of building environments")
    parser.add_argument("--label", default="", help="directory name prefix")
    parser.add_argument("--only", nargs="*", help="rewrite only these cases")
    args = parser.parse_args(argv)
    extra = ["--label", args.label] if args.label else []
    if args.peers:
        extra += ["--peers", str(args.peers)]
    if args.only:
        extra += ["--only", *args.only]
    command = ["python", "-m", "tests.compat.make_corpus", str(CORPUS), *extra]
    if args.baseline:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(args.baseline),
                                                             str(oldenv.REPO)]))
        return subprocess.run([sys.executable, *command[1:]], env=env,
                              cwd=oldenv.REPO).returncode
    root = oldenv.root_dir(args.root)
    status = 0
    for name in args.names or list(oldenv.ENVS):
        if not oldenv.python_of(oldenv.venv_dir(root, name)).exists():
            oldenv.create(root, name)
        status |= oldenv.run(root, name, command)
    return status


if __name__ == "__main__":
    raise SystemExit(main())

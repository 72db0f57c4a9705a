"""The ``milo-pack`` command (also ``python -m milo_pack``): inspect, verify, convert, diff.

Exit codes: 0 success, 1 a check failed or differences were found, 2 a usage or file error
(argparse uses 2 for bad arguments too).  Results go to stdout; errors and warnings to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections.abc import Sequence
from typing import IO, Any

from . import __version__
from .errors import MiloError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "milo-pack"


class UsageError(Exception):
    """A problem with the command line or the input files: reported on stderr, exit 2."""


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect, verify, convert and compare milo_pack model files.",
        epilog="Exit status: 0 ok, 1 check failed or differences found, 2 usage or file error.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_inspect(commands)
    _add_verify(commands)
    _add_convert(commands)
    _add_diff(commands)
    return parser


def _add_inspect(commands: Any) -> None:
    p = commands.add_parser(
        "inspect", help="show the model as a tree, from the manifest only",
        description="Show a readable tree of the model: types, parameters, array shapes and "
                    "dtypes, decoded and stored sizes per sub-object, writer versions, "
                    "metadata and untrusted types. Reads only the manifest; no section data "
                    "is read and nothing is built.")
    p.add_argument("file", help="a .milo file")
    p.add_argument("--json", action="store_true", help="print the manifest itself as JSON")
    p.add_argument("--depth", type=_non_negative, metavar="N",
                   help="show at most N levels below the root")
    p.add_argument("--items", type=_non_negative, default=3, metavar="N",
                   help="items shown from a long list of similar objects (default 3)")
    p.set_defaults(run=_run_inspect)
    _add_storage_option(p)


def _add_verify(commands: Any) -> None:
    p = commands.add_parser(
        "verify", help="run every check of the loader and report which stage failed",
        description="Check the container, the manifest schema, the object graph, every chunk "
                    "digest and zstd frame, then build the model in-process (and discard it) "
                    "to check the invariants that need the data. Exit 0 when all pass, 1 "
                    "otherwise.")
    p.add_argument("file", help="a .milo file")
    p.add_argument("--trusted", action="append", default=[], metavar="TAG",
                   help="allow this type tag beyond the allow-list (repeatable); only for "
                        "files from a trusted source")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")
    p.set_defaults(run=_run_verify)
    _add_storage_option(p)


def _add_convert(commands: Any) -> None:
    p = commands.add_parser(
        "convert", help="convert your own trusted pickle/joblib file to milo_pack",
        description="Load a pickle (or a joblib file: .joblib, .jl) and save it with "
                    "milo_pack. Reading a pickle runs any code it contains: use this only on "
                    "files you created yourself, and say so with --trust-pickle.")
    p.add_argument("input", help="IN.pkl or IN.joblib")
    p.add_argument("output", help="OUT.milo")
    p.add_argument("--trust-pickle", action="store_true",
                   help="confirm that the input is your own pickle from a trusted source")
    p.add_argument("--level", type=int, default=3, metavar="N",
                   help="zstd level 1-22, 0 for uncompressed (default 3)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(run=_run_convert)
    _add_storage_option(p)


def _add_diff(commands: Any) -> None:
    p = commands.add_parser(
        "diff", help="show what differs between two model files",
        description="Compare two files by graph path: type changes, parameter and attribute "
                    "changes, items added or removed, array dtype/shape changes and array "
                    "values (elements that differ, max absolute difference). Writer versions "
                    "are shown as notes and do not count. Exit 0 if identical, 1 otherwise.")
    p.add_argument("old", help="A.milo")
    p.add_argument("new", help="B.milo")
    p.add_argument("--all", action="store_true",
                   help="list every change instead of folding repeated ones (one per tree)")
    p.set_defaults(run=_run_diff)
    _add_storage_option(p)


def _add_storage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   dest="storage_options",
                   help="an fsspec option for URL arguments (s3://, gs://, https://...); "
                        "VALUE is read as JSON when it parses (true, 3, {...}), else as text")


def _storage(args: argparse.Namespace, target: str) -> dict[str, Any] | None:
    """The --storage-option pairs as a dict, for a URL target (None for a path)."""
    from .urls import is_url

    if not is_url(target):
        return None
    options: dict[str, Any] = {}
    for pair in args.storage_options:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option must be KEY=VALUE, not {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 ok, 1 check failed or differences found, 2 usage or file error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, bad arguments: keep argparse's status
        return int(exc.code or 0)
    try:
        return args.run(args)
    except UsageError as exc:
        _error(args.command, str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        # `milo-pack inspect big.milo | head`: the reader left; not an error worth a traceback.
        _silence_stdout()
        return EXIT_OK


def _error(command: str, message: str) -> None:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real stdout (tests)
        pass
    finally:
        os.close(devnull)


def _print_lines(lines: Sequence[str], out: IO[str] | None = None) -> None:
    (out or sys.stdout).write("\n".join(lines) + "\n")


def _open(path: str, storage_options: dict[str, Any] | None = None) -> Any:
    """Open a milo file for reading the manifest; file problems become usage errors."""
    from .reader import MiloFile

    try:
        return MiloFile(path, storage_options=storage_options)
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except MiloError as exc:
        raise UsageError(f"{path!r} is not a valid milo_pack file: {exc}") from None


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------


def _run_inspect(args: argparse.Namespace) -> int:
    from .inspect_view import RenderOptions, build_view, render, render_header

    with _open(args.file, _storage(args, args.file)) as handle:
        if args.json:
            print(json.dumps(handle.manifest, indent=2, ensure_ascii=False))
            return EXIT_OK
        untrusted, problem = _untrusted(handle)
        lines = render_header(
            handle.manifest, handle.sections, file_name=args.file,
            file_size=handle.container.file_size,
            manifest_size=handle.container.members[0].size,
            untrusted=untrusted, problem=problem)
        view = build_view(handle.manifest["root"], handle.sections)
        lines.append("")
        lines.extend(render(view, RenderOptions(depth=args.depth, items=args.items)))
    _print_lines(lines)
    return EXIT_OK


def _untrusted(handle: Any) -> tuple[list[tuple[str, str]] | None, str | None]:
    # inspect shows even an invalid graph (that is when one wants to look at it), with why.
    try:
        return handle.untrusted_types(), None
    except MiloError as exc:
        return None, str(exc)


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------


def _run_verify(args: argparse.Namespace) -> int:
    from .verify import verify_file

    try:
        report = verify_file(args.file, trusted=frozenset(args.trusted),
                             storage_options=_storage(args, args.file))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file!r}: {exc.strerror or exc}") from None
    lines = report.lines()
    _print_lines(lines[-1:] if args.quiet else [f"verify {args.file}", *lines])
    return EXIT_OK if report.ok else EXIT_FAILED


# --------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------

_JOBLIB_SUFFIXES = (".joblib", ".jl")


def _run_convert(args: argparse.Namespace) -> int:
    if not args.trust_pickle:
        raise UsageError(
            f"refusing to read {args.input!r}: loading a pickle runs any code it contains. "
            "Convert only your own pickles from a trusted source, and confirm with "
            "--trust-pickle.")
    if not 0 <= args.level <= 22:
        raise UsageError(f"--level must be from 0 to 22, not {args.level}")
    out_storage = _storage(args, args.output)
    if _exists(args.output, out_storage) and not args.force:
        raise UsageError(f"{args.output!r} exists (use --force to overwrite)")
    print(f"{PROG} convert: warning: reading {args.input!r} with "
          f"{'joblib' if _is_joblib(args.input) else 'pickle'} runs any code it contains",
          file=sys.stderr)
    obj = _load_pickle(args.input)
    _dump(obj, args.output, args.level, out_storage)
    in_size, out_size = os.path.getsize(args.input), _size(args.output, out_storage)
    from .inspect_view import format_bytes

    print(f"wrote {args.output}: {type(obj).__name__}, {format_bytes(in_size)} pickle -> "
          f"{format_bytes(out_size)} milo ({out_size / max(in_size, 1):.1%})")
    return EXIT_OK


def _exists(target: str, storage_options: dict[str, Any] | None) -> bool:
    if storage_options is None:
        return os.path.exists(target)
    from .urls import filesystem

    fs, path = filesystem(target, storage_options)
    return bool(fs.exists(path))


def _size(target: str, storage_options: dict[str, Any] | None) -> int:
    if storage_options is None:
        return os.path.getsize(target)
    from .urls import filesystem

    fs, path = filesystem(target, storage_options)
    return int(fs.size(path))


def _is_joblib(path: str) -> bool:
    return path.lower().endswith(_JOBLIB_SUFFIXES)


def _load_pickle(path: str) -> Any:
    """Load the user's trusted pickle (joblib for .joblib/.jl files)."""
    try:
        if _is_joblib(path):
            try:
                import joblib
            except ImportError:
                raise UsageError(f"{path!r} looks like a joblib file but joblib is not "
                                 "installed") from None
            return joblib.load(path)
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the user vouched for it with --trust-pickle
    except UsageError:
        raise
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise UsageError(f"cannot unpickle {path!r}: {type(exc).__name__}: {exc}") from None


def _dump(obj: Any, path: str, level: int, storage_options: dict[str, Any] | None) -> None:
    from . import dump

    try:
        dump(obj, path, level=level, storage_options=storage_options)
    except MiloError as exc:
        raise UsageError(f"cannot save the object with milo_pack: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------
# diff
# --------------------------------------------------------------------------------------------


def _run_diff(args: argparse.Namespace) -> int:
    from .diff import diff_files

    try:
        result = diff_files(args.old, args.new, _storage(args, args.old),
                            _storage(args, args.new))
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename!r}: {exc.strerror or exc}") from None
    except MiloError as exc:
        raise UsageError(f"invalid file: {exc}") from None
    _print_lines([f"--- {args.old}", f"+++ {args.new}",
                  *result.lines(group_after=None if args.all else 3)])
    return EXIT_OK if result.identical else EXIT_FAILED

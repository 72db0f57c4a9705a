"""The ``milo-pack`` command (also ``python -m milo_pack``): inspect, verify, convert, diff.

Exit codes: 0 success, 1 a check failed or differences were found, 2 a usage or file error
(argparse uses 2 for bad arguments too).  Results go to stdout; errors and warnings to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from . import __version__
from .errors import MiloError, quote

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "milo-pack"


class UsageError(Exception):
    """A problem with the command line or the input files: reported on stderr, exit 2."""


# --------------------------------------------------------------------------------------------
# --version
# --------------------------------------------------------------------------------------------

# Libraries whose versions matter to a file (they are in the manifest's writer block), then the
# optional ones; (name shown, distributions that provide it).
_LIBRARIES = (("numpy", ("numpy",)), ("scipy", ("scipy",)), ("scikit-learn", ("scikit-learn",)),
              ("zstandard", ("zstandard",)), ("msgpack", ("msgpack",)),
              ("xgboost", ("xgboost-cpu", "xgboost")), ("lightgbm", ("lightgbm",)))
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*"
                          r"(?:;\s*(.*))?$")


def declared_requirements() -> dict[str, str]:
    """Distribution name -> version specifier, from ``pyproject.toml`` or installed metadata.

    The floors live in ``pyproject.toml`` only.  From a source checkout its table is read;
    from an installed package, the metadata built from it.  Extras' requirements are included
    (``xgboost-cpu``/``xgboost`` of the ``boost`` extra).
    """
    lines: list[str] = []
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):  # 3.10: the installed metadata
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "milo_pack":
            lines = list(project.get("dependencies", []))
            for extra in project.get("optional-dependencies", {}).values():
                lines.extend(extra)
    if not lines:
        from importlib import metadata

        try:
            lines = metadata.requires("milo_pack") or []
        except metadata.PackageNotFoundError:
            lines = []
    found: dict[str, str] = {}
    for line in lines:
        match = _REQUIREMENT.match(line)
        if match and match[1].lower().replace("_", "-") != "milo-pack" and match[3]:
            found.setdefault(match[1].lower(), match[3].replace(" ", ""))
    return found


def version_text() -> str:
    """What ``milo-pack --version`` prints."""
    import platform
    from importlib import metadata

    from .manifest import FORMAT_NAME, FORMAT_VERSION

    declared = declared_requirements()
    lines = [f"{PROG} {__version__} (python {platform.python_version()})",
             f"file format: {FORMAT_NAME} version {FORMAT_VERSION} (reads version "
             f"{FORMAT_VERSION})",
             "libraries: supported (declared floor) / installed"]
    for name, dists in _LIBRARIES:
        spec = next((declared[d] for d in dists if d in declared), "any")
        installed = None
        for dist in dists:
            try:
                installed = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        optional = "" if name not in ("xgboost", "lightgbm") else "  (optional: extra 'boost')"
        lines.append(f"  {name:<13} {spec:<10} {installed or 'not installed'}{optional}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """``--version``: like argparse's, with text computed only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect, verify, convert and compare milo_pack model files.",
        epilog="Exit status: 0 ok, 1 check failed or differences found, 2 usage or file error.")
    parser.add_argument("--version", action=_VersionAction,
                        help="show the package and file format versions and the supported "
                             "versions of the libraries, then exit")
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
                    "is read and nothing is built. Sizes: 'decoded' is what the arrays take "
                    "in memory once loaded; 'stored' the compressed bytes of those kept in "
                    "sections; 'fills' are arrays of one repeated value and 'inline' ones "
                    "written in the manifest. The header's arrays line adds up to the root's.")
    p.add_argument("file", help="a .milo file")
    p.add_argument("--json", action="store_true", help="print the manifest itself as JSON")
    p.add_argument("--depth", type=_non_negative, metavar="N",
                   help="show at most N levels below the root")
    p.add_argument("--items", type=_non_negative, default=3, metavar="N",
                   help="items shown from a long list of similar objects (default 3)")
    _add_limits(p)
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
    _add_progress(p)
    _add_limits(p)
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
    _add_progress(p)
    p.set_defaults(run=_run_convert)
    _add_storage_option(p)


def _add_diff(commands: Any) -> None:
    p = commands.add_parser(
        "diff", help="show what differs between two model files",
        description="Compare two models in model terms: type changes, parameters and fitted "
                    "attributes that changed (array values: how many elements differ, max "
                    "absolute difference), internal objects that differ, and ensemble members "
                    "(forest trees, boosting stages, XGBoost/LightGBM trees) identical, changed, "
                    "added or removed. --verbose adds the storage-level differences (paths in "
                    "the file's layout). Writer versions are shown as notes and do not count. "
                    "Exit 0 if identical, 1 otherwise.")
    p.add_argument("old", help="A.milo")
    p.add_argument("new", help="B.milo")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also list the storage-level differences")
    p.add_argument("--all", action="store_true",
                   help="with --verbose: list every storage-level change instead of folding "
                        "repeated ones (one per tree)")
    _add_limits(p)
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


def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress and the time left on stderr (default: when stderr is a "
                        "terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="never show progress")


def _add_limits(p: argparse.ArgumentParser) -> None:
    """The reader's budgets (``milo_pack.Limits``), as every command that reads a file takes
    them; the defaults are ``Limits()``'s."""
    group = p.add_argument_group("budgets", "resource budgets for reading the file (defaults: "
                                 "milo_pack.Limits())")
    group.add_argument("--max-memory", type=_size, metavar="SIZE",
                       help="cap every byte budget (manifest, array, section, total decoded, "
                            "chunk, zstd window) at SIZE, e.g. 512M or 2GiB")
    group.add_argument("--limit", action="append", default=[], type=_budget,
                       metavar="NAME=VALUE",
                       help="set one budget, e.g. max_total_bytes=1G or max_objects=100000 "
                            "(repeatable; see milo_pack.Limits)")


def _size(text: str) -> int:
    from .limits import parse_size

    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return value


def _budget(text: str) -> tuple[str, int]:
    from .limits import DEFAULT_LIMITS

    name, sep, value = text.partition("=")
    name = name.strip()
    try:
        if not sep or name.startswith("_"):
            raise TypeError(name)
        DEFAULT_LIMITS.replace(**{name: 0})  # an unknown budget raises TypeError
    except TypeError:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME a budget of milo_pack.Limits, not {text!r}"
        ) from None
    return name, _size(value) if value.strip() != "0" else 0


def _limits(args: argparse.Namespace) -> Any:
    from .limits import DEFAULT_LIMITS, capped

    limits = DEFAULT_LIMITS
    if getattr(args, "limit", None):
        limits = limits.replace(**dict(args.limit))
    if getattr(args, "max_memory", None) is not None:
        limits = capped(limits, args.max_memory)
    return limits


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
        status: int = args.run(args)
        return status
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


class ProgressLine:
    """A progress display on stderr: step, percentage, bytes and the time left.

    On a terminal one line is rewritten in place (at most 10 times a second); elsewhere (asked
    for with ``--progress``) a plain line is printed at most every 2 seconds.  Steps counting in
    the same units (the same ``total``) share one clock: the time left is the time taken so far
    scaled to what remains, shown once 5% is done and a second has passed.
    """

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = tty if enabled is None else enabled
        self.tty = tty
        self.step = ""
        self.total = -1
        self.started = self.shown = 0.0
        self.width = 0

    def __call__(self, step: str, done: int, total: int) -> None:
        """Report ``done`` of ``total`` units (bytes) of ``step``."""
        if not self.enabled:
            return
        now = time.monotonic()
        if total != self.total:  # other units: a new clock
            self.total, self.started = total, now
        if step != self.step:
            self.step, self.shown = step, 0.0
        finished = total > 0 and done >= total
        if now - self.shown < (0.1 if self.tty else 2.0) and not finished:
            return
        self.shown = now
        from .inspect_view import format_bytes

        text = f"{step}: {100 * done / total if total else 100:3.0f}%"
        if total:
            text += f" ({format_bytes(done)} of {format_bytes(total)})"
        elapsed = now - self.started
        if done < total and done >= 0.05 * total and elapsed > 1.0:
            text += f", about {_duration(elapsed * (total - done) / done)} left"
        self._write(text)

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the display (clears the terminal line)."""
        if self.enabled and self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
        self.width = 0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


class _CountingReader:
    """A binary file that reports how much of it was read (pickle/joblib read it in turn)."""

    def __init__(self, f: IO[bytes], report: Any) -> None:
        self._f, self._report, self._size = f, report, os.fstat(f.fileno()).st_size

    def _count(self) -> None:
        self._report(self._f.tell(), self._size)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._count()
        return data

    def readinto(self, buf: Any) -> int:
        n: int = self._f.readinto(buf)  # type: ignore[attr-defined]  # a buffered binary file
        self._count()
        return n

    def readline(self, limit: int = -1) -> bytes:
        line = self._f.readline(limit)
        self._count()
        return line

    def peek(self, n: int = 0) -> bytes:
        peek = getattr(self._f, "peek", None)
        return peek(n) if peek is not None else b""

    def __getattr__(self, name: str) -> Any:  # seek, tell, fileno... for joblib
        return getattr(self._f, name)


def _open(path: str, limits: Any = None,
          storage_options: dict[str, Any] | None = None) -> Any:
    """Open a milo file for reading the manifest; file problems become usage errors."""
    from .reader import MiloFile

    try:
        return MiloFile(path, limits=limits, storage_options=storage_options)
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except MiloError as exc:
        raise UsageError(f"{path!r} is not a valid milo_pack file: {exc}") from None


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------


def _run_inspect(args: argparse.Namespace) -> int:
    from .inspect_view import RenderOptions, build_view, render, render_header

    with _open(args.file, _limits(args), _storage(args, args.file)) as handle:
        if args.json:
            print(json.dumps(handle.manifest, indent=2, ensure_ascii=False))
            return EXIT_OK
        untrusted, problem = _untrusted(handle)
        view = build_view(handle.manifest["root"], handle.sections)
        lines = render_header(
            handle.manifest, handle.sections, file_name=args.file,
            file_size=handle.container.file_size,
            manifest_size=handle.container.members[0].size,
            untrusted=untrusted, problem=problem, view=view)
        if handle.migrations:
            from .migrations import installed_sklearn

            writer = handle.manifest["writer"].get("scikit-learn")
            lines.append(f"migrations: {len(handle.migrations)} from scikit-learn {quote(writer)} "
                         f"to {installed_sklearn()} (applied when loading; see "
                         "docs/COMPATIBILITY.md)")
            lines.extend(f"  {step}" for step in handle.migrations)
        lines.append("")
        lines.extend(render(view, RenderOptions(depth=args.depth, items=args.items)))
    _print_lines(lines)
    return EXIT_OK if problem is None else EXIT_FAILED


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

    progress = ProgressLine(enabled=args.progress)
    try:
        report = verify_file(args.file, trusted=frozenset(args.trusted), limits=_limits(args),
                             progress=lambda stage, done, total: progress(
                                 f"verify {stage}", done, total),
                             storage_options=_storage(args, args.file))
    except OSError as exc:
        raise UsageError(f"cannot read {args.file!r}: {exc.strerror or exc}") from None
    finally:
        progress.close()
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
    progress = ProgressLine(enabled=args.progress)
    try:
        reading = (lambda done, total: progress(f"reading {args.input}", done, total)
                   ) if progress.enabled else None
        obj = _load_pickle(args.input, reading)
        _dump(obj, args.output, args.level, out_storage, lambda done, total: progress(
            f"writing {args.output}", done, total))
    finally:
        progress.close()
    in_size, out_size = os.path.getsize(args.input), _stored_size(args.output, out_storage)
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


def _stored_size(target: str, storage_options: dict[str, Any] | None) -> int:
    if storage_options is None:
        return os.path.getsize(target)
    from .urls import filesystem

    fs, path = filesystem(target, storage_options)
    return int(fs.size(path))


def _is_joblib(path: str) -> bool:
    return path.lower().endswith(_JOBLIB_SUFFIXES)


def _load_pickle(path: str, report: Any = None) -> Any:
    """Load the user's trusted pickle (joblib for .joblib/.jl files)."""
    try:
        if _is_joblib(path):
            try:
                import joblib
            except ImportError:
                raise UsageError(f"{path!r} looks like a joblib file but joblib is not "
                                 "installed") from None
            with open(path, "rb") as f:
                return joblib.load(_CountingReader(f, report) if report else f)
        with open(path, "rb") as f:
            source: Any = _CountingReader(f, report) if report else f
            return pickle.load(source)  # noqa: S301 - the user vouched for it (--trust-pickle)
    except UsageError:
        raise
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise UsageError(f"cannot unpickle {path!r}: {type(exc).__name__}: {exc}") from None


def _dump(obj: Any, path: str, level: int, storage_options: dict[str, Any] | None,
          progress: Any = None) -> None:
    from . import dump
    from .writer import dump_to_path

    try:
        if storage_options is None:
            dump_to_path(obj, path, level=level, progress=progress)
        else:  # a URL: written locally, then uploaded in one operation
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
                            _storage(args, args.new), limits=_limits(args))
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename!r}: {exc.strerror or exc}") from None
    except MiloError as exc:
        raise UsageError(f"invalid file: {exc}") from None
    _print_lines([f"--- {args.old}", f"+++ {args.new}",
                  *result.lines(verbose=args.verbose or args.all,
                                group_after=None if args.all else 3)])
    return EXIT_OK if result.identical else EXIT_FAILED

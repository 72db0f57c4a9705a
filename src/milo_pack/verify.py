"""``milo-pack verify``: run every check the loader runs, stage by stage, and say which failed.

The stages, in order:

1. ``container``: the zip is byte for byte what the writer produces (:class:`ContainerReader`).
2. ``manifest``: JSON under budgets, top-level schema, section table against the members, and
   the manifest's CRC-32 (the manifest has no digest of its own, so the zip CRC is its only
   integrity check).
3. ``versions``: the declared migrations the file needs when it was written by another
   scikit-learn (:mod:`milo_pack.migrations`), each with its graph path; a refused one fails.
4. ``graph``: :func:`~milo_pack.engine.validate_graph` (tags, keys, references, array metadata,
   handler checks) and trust: types outside the allow-list fail unless passed as trusted.
5. ``digests``: every chunk of every section against its SHA-256 (no decompression).
6. ``frames``: every chunk decompresses (zstd frame checks) and un-filters to its declared size.
7. ``load``: the model is built in-process and discarded: invariants that need the data (tree
   structure, sparse indices, KD-tree indices) are only checked while building.

A stage that cannot run because an earlier one failed is reported as skipped; the digest and
frame stages run on whatever sections they can, so one corrupt section does not hide another.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .container import ContainerReader
from .errors import MigrationWarning, MiloError, quote
from .inspect_view import format_bytes, safe_tag, short_tag
from .limits import DEFAULT_LIMITS, Limits
from .reader import MiloFile
from .urls import is_url, open_url

__all__ = ["Stage", "VerifyReport", "verify_file"]

STAGES = ("container", "manifest", "versions", "graph", "digests", "frames", "load")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: work units (bytes) done over the whole verification.

The digest stage counts stored bytes, the frame stage decoded bytes, and the load stage, which
cannot report from inside, is counted as its decoded bytes once it finished (an estimate of its
share of the time: it decodes the same data again, and builds the model)."""


@dataclass
class Stage:
    """The outcome of one stage.

    Attributes
    ----------
    name : str
        One of :data:`STAGES`.
    status : str
        ``"ok"``, ``"FAIL"`` or ``"skip"``.
    detail : str
        What was checked (ok) or why it was skipped.
    errors : list of str
        The reasons, when it failed.
    """

    name: str
    status: str
    detail: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """Every stage's outcome; ``ok`` when all passed."""

    stages: list[Stage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(stage.status == "ok" for stage in self.stages)

    def add(self, name: str, status: str, detail: str = "",
            errors: list[str] | None = None) -> Stage:
        stage = Stage(name, status, detail, list(errors or ()))
        self.stages.append(stage)
        return stage

    def skip_rest(self, reason: str) -> None:
        done = {stage.name for stage in self.stages}
        for name in STAGES:
            if name not in done:
                self.add(name, "skip", reason)

    def lines(self) -> list[str]:
        """Human-readable report, one line per stage plus one per error, then a verdict."""
        out = []
        for stage in self.stages:
            out.append(f"  {stage.status:<4} {stage.name:<9} {stage.detail}".rstrip())
            out.extend(f"         - {error}" for error in stage.errors)
        failed = [stage.name for stage in self.stages if stage.status == "FAIL"]
        out.append("OK" if self.ok else f"FAILED: {', '.join(failed)}")
        return out


def verify_file(path: str | os.PathLike[str], *, trusted: frozenset[str] = frozenset(),
                limits: Limits | None = None, progress: Progress | None = None,
                storage_options: dict[str, Any] | None = None) -> VerifyReport:
    """Verify a file completely (see the module documentation for the stages).

    Parameters
    ----------
    path : str or os.PathLike
        The file to check.
    trusted : frozenset of str
        Type tags to allow beyond the default allow-list.
    limits : Limits, optional
        Resource budgets.
    progress : callable, optional
        ``progress(stage, done, total)`` (see :data:`Progress`), for a progress display.
    storage_options : dict, optional
        For a URL ``path`` (``s3://...``): options of its fsspec filesystem.

    Returns
    -------
    VerifyReport

    Raises
    ------
    OSError
        The file cannot be opened (a usage problem, not a failed check).
    """
    limits = limits or DEFAULT_LIMITS
    report = VerifyReport()
    if is_url(path):
        source, _ = open_url(str(path), storage_options)
    else:
        source = open(path, "rb")  # noqa: SIM115 - closed by the with below
    with source as fileobj:
        if not _check_container(fileobj, limits, report):
            report.skip_rest("container is invalid")
            return report
        try:
            handle = MiloFile(fileobj, limits=limits)
        except MiloError as exc:
            report.add("manifest", "FAIL", errors=[str(exc)])
            report.skip_rest("manifest is invalid")
            return report
        with handle:
            meter = _Meter(handle, progress)
            _check_manifest_crc(handle, report)
            _check_versions(handle, report)
            check = _check_graph(handle, trusted, report)
            good = _check_digests(handle, report, meter)
            _check_frames(handle, good, report, meter)
            if report.ok and check is not None:
                meter.stage("load")
                _check_load(handle, trusted, report)
                meter.add(meter.decoded)
            else:
                report.add("load", "skip", "an earlier stage failed")
    return report


class _Meter:
    """Counts the verification's work (bytes) for a progress display."""

    def __init__(self, handle: MiloFile, progress: Progress | None) -> None:
        self.progress = progress
        self.stored = sum(info.nbytes for info in handle.sections)
        self.decoded = sum(info.length * info.dtype.itemsize for info in handle.sections)
        self.total = self.stored + 2 * self.decoded
        self.done = 0
        self.name = "digests"

    def stage(self, name: str) -> None:
        self.name = name
        self.add(0)

    def add(self, units: int) -> None:
        self.done += units
        if self.progress is not None:
            self.progress(self.name, min(self.done, self.total), self.total)


def _check_container(fileobj: Any, limits: Limits, report: VerifyReport) -> bool:
    try:
        container = ContainerReader(fileobj, max_members=limits.max_members,
                                    max_manifest_bytes=limits.max_manifest_bytes)
    except MiloError as exc:
        report.add("container", "FAIL", errors=[str(exc)])
        return False
    report.add("container", "ok",
               f"{len(container.members)} members, {format_bytes(container.file_size)}")
    return True


def _check_manifest_crc(handle: MiloFile, report: VerifyReport) -> None:
    manifest = handle.manifest
    detail = (f"format {quote(manifest['format'])} version {manifest['format_version']}, "
              f"{len(handle.sections)} sections, CRC-32")
    try:
        handle.container.verify_crc("manifest.json")
    except MiloError as exc:
        report.add("manifest", "FAIL", detail, [str(exc)])
        return
    report.add("manifest", "ok", detail)


def _check_versions(handle: MiloFile, report: VerifyReport) -> None:
    steps = handle.migrations
    writer = handle.manifest["writer"].get("scikit-learn")
    if not steps:
        detail = "no migration needed" + (f" (scikit-learn {quote(writer, 20)})" if writer
                                          else "")
        report.add("versions", "ok", detail)
        return
    from .migrations import installed_sklearn

    refused = [step for step in steps if step.description.startswith("REFUSED")]
    detail = (f"{len(steps)} migration{'s' if len(steps) != 1 else ''} from scikit-learn "
              f"{quote(writer, 20)} to {installed_sklearn()}")
    if refused:
        detail += f", {len(refused)} refused"
    report.add("versions", "FAIL" if refused else "ok", detail, [str(step) for step in steps])


def _check_graph(handle: MiloFile, trusted: frozenset[str], report: VerifyReport) -> Any:
    try:
        ctx = handle.check(trusted)
    except MiloError as exc:
        report.add("graph", "FAIL", errors=[str(exc)])
        return None
    refused = [(tag, where) for tag, where in ctx.untrusted if tag not in trusted]
    if refused:
        errors = [f"untrusted type {safe_tag(tag)} at {where}" for tag, where in refused[:20]]
        if len(refused) > 20:
            errors.append(f"... and {len(refused) - 20} more")
        report.add("graph", "FAIL", "pass --trusted TAG only for files from a trusted source",
                   errors)
        return None
    allowed = f", {len(ctx.untrusted)} trusted by name" if ctx.untrusted else ""
    report.add("graph", "ok", f"{ctx.objects} objects{allowed}")
    return ctx


def _each_section(indices: list[int],
                  check: Callable[[int], None]) -> tuple[list[int], list[str]]:
    """Run ``check`` on each section; return the ones that passed and the errors of the rest."""
    passed, errors = [], []
    for index in indices:
        try:
            check(index)
        except MiloError as exc:
            errors.append(str(exc))
        else:
            passed.append(index)
    return passed, errors


def _check_digests(handle: MiloFile, report: VerifyReport, meter: _Meter) -> list[int]:
    store = handle.store
    meter.stage("digests")

    def verify(index: int) -> None:
        try:
            store.verify(index)
        finally:
            meter.add(handle.sections[index].nbytes)

    passed, errors = _each_section(list(range(len(handle.sections))), verify)
    chunks = sum(info.n_chunks for info in handle.sections)
    stored = sum(info.nbytes for info in handle.sections)
    detail = f"{len(handle.sections)} sections, {chunks} chunks, {format_bytes(stored)}"
    report.add("digests", "FAIL" if errors else "ok", detail, errors)
    return passed


def _check_frames(handle: MiloFile, indices: list[int], report: VerifyReport,
                  meter: _Meter) -> None:
    store = handle.store
    meter.stage("frames")

    def decode_all(index: int) -> None:
        # Chunk by chunk: memory stays at one chunk whatever the section's size.
        info = handle.sections[index]
        for k in range(info.n_chunks):
            store._decode_chunk(index, k)
            rows = min(info.chunk_length, info.length - k * info.chunk_length)
            meter.add(rows * info.dtype.itemsize)

    _, errors = _each_section(indices, decode_all)
    decoded = sum(handle.sections[i].length * handle.sections[i].dtype.itemsize for i in indices)
    skipped = len(handle.sections) - len(indices)
    detail = f"{len(indices)} sections decode to {format_bytes(decoded)}"
    if skipped:
        detail += f" ({skipped} skipped: bad digests)"
    report.add("frames", "FAIL" if errors else "ok", detail, errors)


def _check_load(handle: MiloFile, trusted: frozenset[str], report: VerifyReport) -> None:
    tag = handle.manifest["root"].get("$type") if isinstance(handle.manifest["root"],
                                                             dict) else None
    what = short_tag(tag) if isinstance(tag, str) else type(handle.manifest["root"]).__name__
    try:
        with warnings.catch_warnings():  # the versions stage listed the migrations
            warnings.simplefilter("ignore", MigrationWarning)
            obj = handle.load(trusted=trusted)
    except MiloError as exc:
        report.add("load", "FAIL", "building the model checks invariants that need the data",
                   [str(exc)])
        return
    except Exception as exc:  # noqa: BLE001 - any other failure is a finding, not a crash
        report.add("load", "FAIL", "unexpected error while building",
                   [f"{type(exc).__name__}: {quote(str(exc), 200)}"])
        return
    del obj  # built only to run the invariant checks
    report.add("load", "ok", f"built {what}; model invariants hold")

"""Render results: plain-text table, Markdown, JSON."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from milo_pack.bench.machine import format_machine
from milo_pack.bench.results import ModelRecord, Result, TargetCheck, as_dict

__all__ = [
    "SCHEMA",
    "HEADERS",
    "build_document",
    "write_json",
    "table_rows",
    "format_table",
    "format_targets",
    "format_summary",
    "format_markdown",
]

SCHEMA = "milo_pack.bench/1"

HEADERS = (
    "model",
    "method",
    "size",
    "x pkl",
    "save",
    "x pkl",
    "load",
    "x pkl",
    "peak mem",
    "x pkl",
    "inspect",
    "same",
    "target",
    "note",
)
_RIGHT = {2, 3, 4, 5, 6, 7, 8, 9, 10}  # numeric columns, right-aligned

LEGEND = (
    "size: file size. save: median wall time of a save in this process. load: median wall time "
    "of a load in a fresh process (imports excluded). peak mem: median rise of the child's peak "
    "RSS (ru_maxrss) during the load. x pkl: ratio to pickle (protocol 5) for the same model in "
    "this run. inspect: milo_pack.inspect (lazy: open + manifest). same: predict/predict_proba/"
    "decision_function/transform outputs on a fixed sample exactly equal after the round trip. "
    "target: the project's targets (pass/MISS, annotation only)."
)


def fmt_bytes(n: float | None) -> str:
    """``1234567`` -> ``"1.23 MB"`` (decimal units); ``None`` -> ``"-"``."""
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n / scale < 100 else f"{n / scale:.0f} {unit}"
    return f"{n:.0f} B"


def fmt_seconds(s: float | None) -> str:
    """Seconds as ``"1.23 s"``, ``"45.6 ms"``, ``"0.12 ms"``; ``None`` -> ``"-"``."""
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.3g} s" if s < 100 else f"{s:.0f} s"
    ms = s * 1e3
    if ms >= 100:
        return f"{ms:.0f} ms"
    return f"{ms:.3g} ms" if ms >= 1 else f"{ms:.2f} ms"


def fmt_ratio(r: float | None) -> str:
    """Ratio as ``"0.117x"``, ``"1.00x"``, ``"12x"``; ``None`` -> ``"-"``."""
    if r is None:
        return "-"
    if r >= 10:
        return f"{r:.0f}x"
    return f"{r:.2f}x" if r >= 1 else f"{r:.3f}x"


def _target_cell(checks: list[TargetCheck]) -> str:
    words = {True: "pass", False: "MISS", None: "n/a"}
    return " ".join(f"{c.key}:{words[c.passed]}" for c in checks)


def _note(result: Result) -> str:
    if result.status != "ok":
        return f"{result.status}: {result.error}"
    notes = []
    if result.file_from:
        notes.append(f"file and save of {result.file_from}")
    if result.mismatches:
        notes.append("differs: " + ", ".join(result.mismatches))
    return "; ".join(notes)


def table_rows(results: list[Result]) -> list[list[str]]:
    """One row of cells per result, in :data:`HEADERS` order."""
    rows = []
    for r in results:
        if r.status != "ok":
            rows.append([r.model, r.method, r.status] + [""] * 10 + [_note(r)])
            continue
        q = r.ratios
        same = {True: "yes", False: "NO", None: "-"}[r.identical]
        rows.append(
            [
                r.model,
                r.method,
                fmt_bytes(r.size_bytes),
                fmt_ratio(q.get("size")),
                fmt_seconds(r.save_s),
                fmt_ratio(q.get("save")),
                fmt_seconds(r.load_s),
                fmt_ratio(q.get("load")),
                fmt_bytes(r.peak_mem_bytes),
                fmt_ratio(q.get("peak_mem")),
                fmt_seconds(r.inspect_s),
                same,
                _target_cell(r.targets),
                _note(r),
            ]
        )
    return rows


def format_table(results: list[Result]) -> str:
    """Plain-text table with aligned columns (the last, free-text column is not padded)."""
    rows = [list(HEADERS)] + table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS) - 1)]
    lines = []
    previous_model = None
    for n, row in enumerate(rows):
        if n > 1 and row[0] != previous_model:
            lines.append("")
        previous_model = row[0]
        cells = [
            cell.rjust(widths[i]) if i in _RIGHT and n > 0 else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(HEADERS[-1]))
    return "\n".join(lines)


# Targets whose value and limit are seconds, not ratios (targets.py).
_SECONDS_TARGETS = frozenset({"first-load", "open"})


def _target_lines(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        for c in r.targets:
            if c.value is None:
                measured = "not measured"
            elif c.key.startswith("small"):
                measured = f"{fmt_seconds(c.value)} ({fmt_ratio(c.to_pickle)} pickle)"
            elif c.key in _SECONDS_TARGETS:
                measured = f"{fmt_seconds(c.value)} (limit {fmt_seconds(c.limit)})"
            else:
                measured = f"{fmt_ratio(c.value)} (limit {c.limit:g}x)"
            verdict = {True: "pass", False: "MISS", None: "n/a"}[c.passed]
            lines.append(f"{verdict:4}  {r.model} / {r.method}: {c.description}: {measured}")
    return lines


def format_targets(results: list[Result]) -> str:
    """The target annotations, one line each, with a pass/MISS count."""
    lines = _target_lines(results)
    if not lines:
        return "Targets: none evaluated (no milo_pack results)."
    passed = sum(line.startswith("pass") for line in lines)
    missed = sum(line.startswith("MISS") for line in lines)
    return "\n".join(
        [f"Targets ({passed} pass, {missed} MISS; annotations, not asserted):"]
        + ["  " + line for line in lines]
    )


def build_document(
    machine: dict[str, Any],
    config: dict[str, Any],
    models: list[ModelRecord],
    results: list[Result],
) -> dict[str, Any]:
    """The JSON document: schema tag, machine, configuration, models and results."""
    return {
        "schema": SCHEMA,
        "machine": machine,
        "config": config,
        "models": [as_dict(m) for m in models],
        "results": [as_dict(r) for r in results],
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write the JSON document (indented, keys in a stable order)."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _md_escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def format_markdown(document: dict[str, Any], results: list[Result]) -> str:
    """Markdown report: machine, configuration, results table, targets, legend."""
    config = document["config"]
    lines = ["# milo_pack benchmark", ""]
    lines += [f"- {line}" for line in format_machine(document["machine"], width=None)]
    lines += [
        f"- Suite: {config['suite']}, repeat {config['repeat']} (medians), "
        f"methods: {', '.join(config['methods'])}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---:" if i in _RIGHT else "---" for i in range(len(HEADERS))) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in table_rows(results)]
    target_lines = _target_lines(results)
    if target_lines:
        lines += ["", "## Targets", "", "Annotations only; nothing is asserted.", ""]
        lines += [f"- {_md_escape(line)}" for line in target_lines]
    lines += ["", "## Columns", "", LEGEND, ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ summary

_SUMMARY_METHOD = "milo_pack"  # targets are summarized for the default level


def _ratio_cell(label: str, value: float | None, width: int = 7) -> str:
    return f"{label} {fmt_ratio(value):>{width}}" if value is not None else " " * (
        len(label) + 1 + width)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                     for k, v in params.items() if isinstance(v, (int, float, str)))


def format_summary(records: list[ModelRecord], results: list[Result]) -> str:
    """A few lines per model: pickle's figures, then each method's ratios to them.

    The columns are file size, save time, load time (a fresh process) and peak memory while
    loading, each as a ratio to pickle for the same model, and whether predictions are the same
    after the round trip; then one line on the project's targets for the default milo_pack level
    (every target line and the full table: ``--table``).
    """
    lines = ["Ratios to pickle for the same model (lower is better); load: in a fresh process;",
             "memory: peak rise while loading; same: identical predictions after the round trip.",
             ""]
    by_model: dict[str, list[Result]] = {}
    for result in results:
        by_model.setdefault(result.model, []).append(result)
    for record in records:
        rows = by_model.get(record.name, [])
        base = next((r for r in rows if r.method == "pickle" and r.status == "ok"), None)
        what = record.class_name.rsplit(".", 1)[-1]
        params = _params_text(record.params)
        lines.append(f"{record.name}: {what}" + (f" ({params})" if params else ""))
        if base is not None:
            lines.append(f"  pickle          {fmt_bytes(base.size_bytes):>8}, save "
                         f"{fmt_seconds(base.save_s)}, load {fmt_seconds(base.load_s)}, memory "
                         f"+{fmt_bytes(base.peak_mem_bytes)}")
        for r in rows:
            if r.method == "pickle":
                continue
            if r.status != "ok":
                lines.append(f"  {r.method:<15} {r.status}: {(r.error or '')[:70]}")
                continue
            q = r.ratios
            own_file = r.file_from is None
            cells = [_ratio_cell("size", q.get("size") if own_file else None),
                     _ratio_cell("save", q.get("save") if own_file else None),
                     _ratio_cell("load", q.get("load")),
                     _ratio_cell("memory", q.get("peak_mem"))]
            same = {True: "same", False: "DIFFERENT", None: ""}[r.identical]
            lines.append((f"  {r.method:<15} " + "  ".join(cells) + f"  {same}").rstrip())
        lines.append("")
    checks = [(r, c) for r in results if r.method == _SUMMARY_METHOD for c in r.targets]
    if checks:
        met = sum(c.passed is True for _, c in checks)
        missed: dict[str, list[str]] = {}
        for r, c in checks:
            if c.passed is False:
                missed.setdefault(c.key, []).append(r.model)
        text = f"Targets for {_SUMMARY_METHOD}: {met} of {len(checks)} met"
        if missed:
            text += "; missed: " + "; ".join(f"{key} ({', '.join(models)})"
                                             for key, models in missed.items())
        lines.extend(textwrap.wrap(text, width=100, subsequent_indent="  "))
    lines.append("The full table and every target line: --table (or --markdown/--json FILE).")
    return "\n".join(lines)

"""The "what is validated, per class" section of ``docs/SECURITY.md``, made from the specs.

``python -m milo_pack.handlers.invariants.doc docs/SECURITY.md`` rewrites the section between
its markers; ``tests/test_security_doc.py`` fails when the file and the specs differ, so the
promise and the code cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .kinds import MAX_THREADS, Spec
from .params import THREAD_PARAMS
from .specs import SPECS, STATELESS, STRUCTURES

__all__ = ["BEGIN", "END", "render", "replace_section"]

BEGIN = ("<!-- BEGIN GENERATED: invariants (python -m milo_pack.handlers.invariants.doc "
         "docs/SECURITY.md) -->")
END = "<!-- END GENERATED: invariants -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _spec(spec: Spec) -> list[str]:
    lines = [f"#### {spec.title}", "", f"Native code: {spec.native}.", ""]
    if spec.attrs:
        lines += ["| attribute | must be | why |", "| --- | --- | --- |"]
        for attr in spec.attrs:
            kind = attr.kind.describe()
            if attr.optional:
                kind += " (when set)"
            if attr.data and "array" in kind:
                kind += "; its values are data (any)"
            lines.append(f"| `{attr.name}` | {_cell(kind)} | {_cell(attr.why)} |")
        lines.append("")
    if spec.rules:
        lines += [f"- {rule.text}" for rule in spec.rules]
        lines.append("")
    if spec.reads:
        lines += ["Also read by these checks: " + ", ".join(f"`{n}`" for n in spec.reads)
                  + ".", ""]
    if spec.title in STATELESS:
        lines += ["Checked on every instance (these are constructor parameters).", ""]
    return lines


def render() -> str:
    """The generated section, markers included."""
    lines = [
        BEGIN,
        "",
        "### Validated per class",
        "",
        "Generated from the declarations in `src/milo_pack/handlers/invariants/specs.py`. "
        "Each spec covers its class and subclasses once fitted (an unfitted estimator holds no "
        "state for native code). Every attribute listed must be present with that kind: a "
        "missing one, another type, another shape or a value out of range is an "
        "`InvariantError` naming it and its graph path. Numpy integer scalars count as ints; "
        "bools and floats never do. Symbols (`F` features, `N` samples, `C` classes, `K` "
        "outputs, clusters or rows, `S` stages, `L` members, `O` outputs) are bound by their "
        "first mention: every later mention must be the same number, so bounds come from "
        "validated array shapes. Ensemble members are checked against their ensemble "
        "whether stored one node each, packed, or built lazily on first use.",
        "",
        "Every scikit-learn estimator's constructor parameters are also validated at load with "
        "scikit-learn's own constraints (its class's `_parameter_constraints`, through "
        "`sklearn.utils._param_validation`), and "
        + ", ".join(f"`{name}`" for name in sorted(THREAD_PARAMS))
        + f" must be None or an int within +-{MAX_THREADS} (it sizes a thread pool). An "
        "attribute may not shadow anything its class defines.",
        "",
    ]
    for spec in SPECS:
        lines += _spec(spec)
    lines += ["#### Structures checked by their own handlers", ""]
    lines += [f"- {name}: {text}." for name, text in STRUCTURES]
    lines += ["", END]
    return "\n".join(lines)


def replace_section(text: str) -> str:
    """``text`` with its generated section replaced by :func:`render`'s."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m milo_pack.handlers.invariants.doc docs/SECURITY.md",
              file=sys.stderr)
        return 2
    path = Path(args[0])
    # The specs name classes that must be importable to describe them: nothing to import.
    path.write_text(replace_section(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

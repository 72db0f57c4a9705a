"""docs/SECURITY.md lists exactly what is validated per class: the section is generated from the
declared invariants, and this test fails when the two differ (regenerate it with
``python -m milo_pack.handlers.invariants.doc docs/SECURITY.md``)."""

from __future__ import annotations

from pathlib import Path

from milo_pack.handlers.invariants import SPECS, STRUCTURES
from milo_pack.handlers.invariants.doc import BEGIN, END, render, replace_section

DOC = Path(__file__).resolve().parents[1] / "docs" / "SECURITY.md"


def test_generated_section_matches_the_declarations():
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(BEGIN):text.index(END) + len(END)]
    assert section == render(), (
        "docs/SECURITY.md is out of date: run python -m milo_pack.handlers.invariants.doc "
        "docs/SECURITY.md")


def test_every_spec_and_attribute_is_in_the_document():
    section = render()
    for spec in SPECS:
        assert f"#### {spec.title}" in section
        for attr in spec.attrs:
            assert f"| `{attr.name}` |" in section
        for rule in spec.rules:
            assert rule.text in section
    for name, _ in STRUCTURES:
        assert name in section


def test_replacing_keeps_the_rest_of_the_document():
    text = DOC.read_text(encoding="utf-8")
    stale = text.replace(render(), f"{BEGIN}\nstale\n{END}")
    assert replace_section(stale) == text

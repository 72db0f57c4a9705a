"""Every attribute the declared invariants read, mutated: refused at load, or harmless.

See :mod:`tests.attacks.differential` for the operators, the outcomes and how to add a family.
One test per family runs all its mutants in one subprocess (restarted after a crash).  The README's
test command runs a sample of the operators (``MILO_DIFFERENTIAL=quick``, the default); the CI
step ``.ci/steps/20-differential.sh`` runs every operator (``MILO_DIFFERENTIAL=full``).
"""

from __future__ import annotations

import os

import pytest

from milo_pack.handlers.invariants import SPECS, specs_for

from .differential import Family, expected_outputs, failures, make_mutants, run_mutants
from .families import FAMILIES

FULL = os.environ.get("MILO_DIFFERENTIAL", "quick") == "full"
# The quick run keeps these operators (the ones that found bugs first); full runs all of them.
QUICK_OPERATORS = ("remove", "numpy_int", "float", "string", "bool", "plus_one", "minus_one",
                   "negative", "huge", "above_bound", "shrink_axis0", "shrink_axis1",
                   "grow_axis0", "grow_axis1", "element_past_max", "element_negative",
                   "element_above", "item0_element_above", "item0_shrink_axis0", "list",
                   "as_float", "item_none", "grow", "shrink", "none", "unknown", "set_true",
                   "value_past_end", "with_Y_norm_squared", "dense", "tuple")


def _outcomes(name: str, directory: str) -> dict[str, str]:
    from pathlib import Path

    family = FAMILIES[name]
    model = family.make()
    X = family.X()
    mutants = make_mutants(family, model)
    if not FULL:
        mutants = [m for m in mutants if m.case == "honest"
                   or m.case.rpartition(":")[2] in QUICK_OPERATORS]
    expected = expected_outputs(model, X, family.methods)
    return run_mutants(family, mutants, Path(directory), expected, X)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mutants_are_refused_or_harmless(name, tmp_path):
    outcomes = _outcomes(name, str(tmp_path))
    assert outcomes.get("honest") == "SAME", outcomes.get("honest")
    bad = failures(outcomes)
    assert not bad, "\n".join(f"{case}: {outcome}" for case, outcome in sorted(bad.items()))
    assert any(o.startswith("REFUSED") for o in outcomes.values()), "nothing was refused"


def test_every_spec_has_a_family():
    """A spec added without a family here would never be mutated."""
    covered = {spec.title for family in FAMILIES.values()
               for spec in _family_specs(family)}
    missing = [spec.title for spec in SPECS if spec.title not in covered]
    assert not missing, missing


def _family_specs(family: Family) -> list:
    from sklearn.base import BaseEstimator

    model = family.make()
    found = list(specs_for(type(model)))
    for value in vars(model).values():
        if isinstance(value, BaseEstimator):
            found.extend(specs_for(type(value)))
    for path in family.member_paths:
        from .differential import get_at

        found.extend(specs_for(type(get_at(model, path))))
    return found

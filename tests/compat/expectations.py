"""What the corpus test accepts besides identical outputs, each with its reason.

``REFUSED``: cases milo_pack refuses to load under some reader versions, because the stored model
has no faithful equivalent there (case name -> a phrase the VersionError must contain).

``DRIFT``: cases whose outputs changed because scikit-learn itself computes them differently
between the writer's and reader's versions (pickle and skops give the same differences): they must
still agree to ``rtol``/``atol``.  Keep this list short; every entry says what changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from milo_pack.migrations import parse_version

REFUSED: dict[str, str] = {
    # scikit-learn 1.5's default AdaBoostClassifier uses SAMME.R, removed in 1.6: no faithful
    # equivalent (pickle and skops load it and predict other labels).
    "AdaBoostClassifier": "SAMME.R",
    "adaboost-samme-r": "SAMME.R",
}


@dataclass(frozen=True)
class Drift:
    case: str
    first: str  # the scikit-learn release whose computation differs
    reason: str
    rtol: float = 1e-7
    atol: float = 1e-12


DRIFT: tuple[Drift, ...] = ()


def drift_for(case: str, writer: str, reader: str) -> Drift | None:
    """The documented drift for ``case`` between those versions, if any."""
    w, r = parse_version(writer), parse_version(reader)
    for drift in DRIFT:
        first = parse_version(drift.first)
        if drift.case == case and w is not None and r is not None and (
                w < first <= r or r < first <= w):
            return drift
    return None

"""Optional bar chart of the ratios to pickle (needs matplotlib, which is not a dependency)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from milo_pack.bench.results import Result

__all__ = ["matplotlib_missing", "plot_ratios"]

_PANELS = (
    ("size", "file size"),
    ("save", "save time"),
    ("load", "load time"),
    ("peak_mem", "peak memory while loading"),
)


def matplotlib_missing() -> str | None:
    """A message when matplotlib is not installed, else ``None``."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed: no plot written (pip install matplotlib)"
    return None


def plot_ratios(results: list[Result], path: Path) -> None:
    """Write a PNG with one panel per figure: grouped bars of ratio to pickle, log scale.

    Parameters
    ----------
    results : list of Result
        Results of the run; ones without figures are left out.
    path : Path
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.status == "ok"]
    models = list(dict.fromkeys(r.model for r in ok))
    methods = list(dict.fromkeys(r.method for r in ok))
    width = 0.8 / max(len(methods), 1)
    fig, axes = plt.subplots(len(_PANELS), 1, figsize=(max(8, 1.4 * len(models) + 3), 14))
    for ax, (key, title) in zip(axes, _PANELS, strict=True):
        for j, method in enumerate(methods):
            xs, ys = [], []
            for i, model in enumerate(models):
                value = next(
                    (r.ratios.get(key) for r in ok if r.model == model and r.method == method),
                    None,
                )
                if value:
                    xs.append(i + (j - (len(methods) - 1) / 2) * width)
                    ys.append(value)
            ax.bar(xs, ys, width=width, label=method)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{title} (ratio to pickle, lower is better)")
        ax.set_xlim(-0.5, len(models) - 0.5)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=20, ha="right")
    axes[0].legend(ncol=min(len(methods), 4), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

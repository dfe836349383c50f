"""PR and ROC curves as PNG files (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr(pr50: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Per-class precision-recall curves at IoU 0.5 (from :func:`coco_metrics`'s ``pr50``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for name, (recall, precision) in pr50.items():
        ap = float(np.mean(precision))
        ax.plot(recall, precision, label=f"{name} (AP50 {ap:.3f})")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Precision-recall, IoU 0.5",
    )
    ax.grid(alpha=0.3)
    if pr50:
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, plt, path)


def plot_roc(
    far: np.ndarray,
    detection_rate: np.ndarray,
    path: str | Path,
    auroc: float | None = None,
    marks: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Bag-level ROC (false-alarm rate vs detection rate); ``marks`` name -> (far, dr)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    label = f"AUROC {auroc:.3f}" if auroc is not None and np.isfinite(auroc) else None
    ax.plot(far, detection_rate, drawstyle="steps-post", label=label)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    for name, (x, y) in (marks or {}).items():
        ax.plot([x], [y], "o", ms=4)
        ax.annotate(
            f"{name}: {y:.2f}", (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7
        )
    ax.set(
        xlabel="false-alarm rate",
        ylabel="detection rate",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Bag-level ROC",
    )
    ax.grid(alpha=0.3)
    if label:
        ax.legend(loc="lower right")
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

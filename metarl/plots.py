"""Figures for evaluation results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(path: str | Path, steps: Sequence[int], curves: Mapping[str, tuple[list, list]],
                ylabel: str, title: str, reference: Mapping[str, Sequence[float]] | None = None
                ) -> Path:
    """``curves[label] = (means, ci95)`` against ``steps``, with 95% bands."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (mean, ci) in curves.items():
        # An oracle (a policy trained on each task, Finn et al. 2017 Fig. 5) takes no steps.
        style = dict(ls="--") if label.startswith("oracle") else dict(marker="o", ms=3)
        line, = ax.plot(steps, mean, label=label, **style)
        lo = [m - c for m, c in zip(mean, ci)]
        hi = [m + c for m, c in zip(mean, ci)]
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
    for label, values in (reference or {}).items():
        ax.plot(steps[: len(values)], values[: len(steps)], "k--", lw=1, label=label)
    return _finish(fig, ax, path, "gradient steps at test time", ylabel, title)


def plot_training(path: str | Path, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                  ylabel: str, title: str, smooth: int = 1) -> Path:
    """``curves[label] = (iterations, values)``: each run's logged values, faint, and their
    trailing moving average over ``smooth`` points on top."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (steps, values) in curves.items():
        line, = ax.plot(steps, values, lw=0.8, alpha=0.35 if smooth > 1 else 1.0,
                        label=None if smooth > 1 else label)
        if smooth > 1:
            windows = [values[max(0, i - smooth + 1): i + 1] for i in range(len(values))]
            averaged = [sum(w) / len(w) for w in windows]
            ax.plot(steps, averaged, color=line.get_color(), lw=1.6, label=label)
    return _finish(fig, ax, path, "meta-iteration", ylabel, title)


def plot_fits(path: str | Path, x, truth, support: tuple, predictions: Mapping[str, Mapping],
              title: str) -> Path:
    """One panel per method: the true function, the support points and the fitted curves
    after each number of steps (Finn et al. 2017, Figure 2)."""
    n = len(predictions)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.6), squeeze=False)
    for ax, (label, by_step) in zip(axes[0], predictions.items()):
        ax.plot(x, truth, color="red", lw=2, label="ground truth")
        for steps, y in by_step.items():
            style = ":" if steps == 0 else "--" if steps == 1 else "-"
            ax.plot(x, y, style, color="tab:green", alpha=0.4 + 0.6 * (steps > 0),
                    label="pre-update" if steps == 0 else f"{steps} grad step{'s' * (steps > 1)}")
        ax.plot(support[0], support[1], "^", color="purple", ms=7, label="used for grad")
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_ylim(-5.5, 5.5)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_trajectories(path: str | Path, goal: Sequence[float],
                      paths: Mapping[str, Mapping[int, Sequence[Sequence[float]]]],
                      title: str) -> Path:
    """One panel per method: a 2D point's path ``[T, 2]`` before adaptation and after each
    number of steps, and the goal (Finn et al. 2017, Figure 4 bottom)."""
    n = len(paths)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4), squeeze=False)
    for ax, (label, by_step) in zip(axes[0], paths.items()):
        for steps, xy in by_step.items():
            xy = [tuple(p) for p in xy]
            style = ":" if steps == 0 else "--" if steps == 1 else "-"
            ax.plot([p[0] for p in xy], [p[1] for p in xy], style, lw=1.5,
                    label="pre-update" if steps == 0 else f"{steps} grad step{'s' * (steps > 1)}")
        ax.plot([goal[0]], [goal[1]], "*", color="red", ms=12, label="goal")
        ax.plot([0], [0], "o", color="black", ms=4)
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _finish(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, grid and legend one line plot, write it and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)

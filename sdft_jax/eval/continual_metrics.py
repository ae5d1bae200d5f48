"""Continual-learning metrics from an accuracy matrix R[i][j] (after stage i, task j), with the
base model's accuracies b[j] (before any training).

average accuracy  = mean_j R[T-1][j]
backward transfer = mean_{j < T-1} (R[T-1][j] - R[j][j])     (negative = forgetting)
forward transfer  = mean_{j > 0}   (R[j-1][j] - b[j])         (gain on task j before training on it)
normalized        = (acc - b[j]) / (max over stages of R[.][j] - b[j])   (the paper's curves: 0 = base, 1 = best)
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend, no open figures


def continual_metrics(R, base) -> dict:
    R, base = np.asarray(R, np.float64), np.asarray(base, np.float64)
    T = R.shape[0]
    if R.shape[1] < T:
        raise ValueError(f"accuracy matrix {R.shape}: needs a column for every stage's task")
    out = {"average_accuracy": float(R[-1].mean()),
           "backward_transfer": float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)])) if T > 1 else 0.0,
           "forward_transfer": float(np.mean([R[j - 1, j] - base[j] for j in range(1, T)])) if T > 1 else 0.0}
    best = np.maximum(R.max(axis=0), base)
    span = np.where(best - base > 0, best - base, 1.0)
    out["normalized"] = ((R - base) / span).tolist()
    return out


def plot(R, base, task_names, stage_names, path: str, title: str = "") -> None:
    """Accuracy of every task after each stage (raw and normalized), one PNG."""
    R, base = np.asarray(R, np.float64), np.asarray(base, np.float64)
    norm = np.asarray(continual_metrics(R, base)["normalized"])
    xs = np.arange(len(stage_names) + 1)
    labels = ["base"] + [f"{i + 1}. {name}" for i, name in enumerate(stage_names)]
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for j, name in enumerate(task_names):
        axes[0].plot(xs, np.concatenate([[base[j]], R[:, j]]), marker="o", label=name)
        axes[1].plot(xs, np.concatenate([[0.0], norm[:, j]]), marker="o", label=name)
    for ax, ylabel in zip(axes, ("accuracy", "normalized (0 = base, 1 = best)")):
        ax.set_xticks(xs, labels, rotation=20)
        ax.set_xlabel("after stage")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

"""The importance bar chart: one panel per stream, one bar group per block (a bar per pyramid stage), and the
removed blocks marked, so a reader sees at a glance what was cut and whether the streams agreed."""

from __future__ import annotations

import math
from pathlib import Path

from neocompress.prune.importance import BlockImportance


def plot_importance(importance: BlockImportance, removed: set[int], path: str | Path, title: str = "") -> Path:
    """Write a PNG of per-stage importance for every stream; removed blocks' labels are red and starred."""
    from neocompress.core.distributed import is_main

    if not is_main():  # a launched run: rank 0 draws it
        return Path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, stages = importance.num_blocks, importance.stages
    fig = Figure(figsize=(max(6.0, 0.42 * n + 2), 2.4 * len(importance.streams) + 0.6), dpi=110)
    FigureCanvasAgg(fig)
    width = 0.8 / stages
    for row, stream in enumerate(importance.streams):
        ax = fig.add_subplot(len(importance.streams), 1, row + 1)
        per_stage = importance.per_stage(stream)
        for k in range(stages):
            xs = [b - 0.4 + width * (k + 0.5) for b in range(n)]
            ys = [0.0 if math.isnan(per_stage[b][k]) else per_stage[b][k] for b in range(n)]
            ax.bar(xs, ys, width=width, color=f"C{k}", label=f"stage {k}")
        ax.set_xticks(range(n))
        ax.set_xticklabels([f"{b}*" if b in removed else str(b) for b in range(n)], fontsize=7)
        for b, label in enumerate(ax.get_xticklabels()):
            if b in removed:
                label.set_color("red")
        ax.set_ylabel(f"{stream}\n1 - cos")
        ax.grid(axis="y", alpha=0.3)
        if row == 0:
            ax.set_title(title or "block importance (red *: removed)")
            ax.legend(fontsize=7, ncols=stages)
    fig.axes[-1].set_xlabel("block")
    fig.tight_layout()
    fig.savefig(path)
    return path

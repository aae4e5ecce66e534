"""The report's pictures: top-1 against size and latency, the search's candidates, the confusion matrix."""

from __future__ import annotations

import io

import numpy as np

from tflite_opt.results.report import ConvertReport


def _pyplot():
    """matplotlib's pyplot drawing off-screen (no display on CI machines or servers)."""
    import matplotlib  # deferred: a quarter of a second to import, and only the report files need it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # deferred, and imported after choosing the off-screen backend

    return pyplot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plotted(report: ConvertReport) -> list[str]:
    """The pictures a report gets: none of accuracy without evaluation data (empty axes tell nothing)."""
    measured = any(v.top1 is not None for v in report.variants)
    return [
        *(["tradeoff.png"] if measured else []),
        *(["confusion.png"] if report.chosen.accuracy is not None else []),
        *(["search.png"] if report.search is not None else []),
    ]


def plot_tradeoff(report: ConvertReport) -> bytes | None:
    """PNG: top-1 against gzip size and against p50 latency, one point per variant; None without any top-1."""
    measured = [v for v in report.variants if v.top1 is not None]
    if not measured:
        return None
    plt = _pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, label, value in (
        (axes[0], "gzip size (KiB)", lambda v: v.gzip_size_bytes / 1024),
        (axes[1], "p50 latency (ms)", lambda v: v.latency.p50),
    ):
        for i, v in enumerate(measured):
            axis.scatter(value(v), 100 * v.top1, s=40)
            # Staggered labels stay readable where variants share a top-1.
            axis.annotate(
                v.variant, (value(v), 100 * v.top1), textcoords="offset points", xytext=(4, 4 + 9 * (i % 3)), fontsize=8
            )
        low = min(100 * v.top1 for v in measured) if measured else 0.0
        axis.set_ylim(max(0.0, low - 2.0), 100.5)
        if report.keras_top1 is not None:
            axis.axhline(100 * report.keras_top1, linestyle="--", linewidth=1, color="grey", label="Keras")
            axis.legend(loc="lower right")
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
    figure.suptitle(f"{report.model}: accuracy against size and latency")
    content = _png(figure)
    plt.close(figure)
    return content


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and top-1 (higher), by cost."""
    front = []
    for i, (cost, score) in enumerate(points):
        dominated = any(
            (c <= cost and s >= score) and (c < cost or s > score) for j, (c, s) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_search(report: ConvertReport) -> bytes | None:
    """PNG: every search candidate, top-1 against gzip size and p50 latency, with the Pareto front
    and the budget line; None without a search."""
    outcome = report.search
    if outcome is None:
        return None
    plt = _pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    floor = 100 * outcome.keras_top1 - outcome.config.max_accuracy_drop
    measured = [c for c in outcome.candidates if c.measured is not None]
    for axis, label, cost in (
        (axes[0], "gzip size (KiB)", lambda c: c.gzip_bytes / 1024),
        (axes[1], "p50 latency (ms)", lambda c: c.measured.latency.p50),
    ):
        points = [(cost(c), 100 * c.top1) for c in measured]
        front = pareto_front(points)
        axis.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:blue", alpha=0.5)
        for i, c in enumerate(measured):
            chosen = c.variant == outcome.chosen.variant
            axis.scatter(
                *points[i],
                s=90 if chosen else 40,
                marker="*" if chosen else "o",
                color="tab:green" if c.within_budget else "tab:red",
                zorder=3,
            )
            axis.annotate(c.variant, points[i], textcoords="offset points", xytext=(4, 4 + 9 * (i % 3)), fontsize=7)
        axis.axhline(floor, linestyle="--", linewidth=1, color="grey", label=f"budget ({floor:.2f}%)")
        axis.axhline(100 * outcome.keras_top1, linestyle=":", linewidth=1, color="black", label="Keras")
        low = min([p[1] for p in points] + [floor])
        axis.set_ylim(max(0.0, low - 1.0), min(100.5, 100 * outcome.keras_top1 + 1.0))
        axis.set_xlabel(label)
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    figure.suptitle(f"{report.model}: search candidates (green within the budget, star chosen, line the Pareto front)")
    content = _png(figure)
    plt.close(figure)
    return content


def plot_confusion(report: ConvertReport) -> bytes | None:
    """PNG: the confusion matrix of the chosen variant, or None without evaluation data."""
    chosen = report.chosen
    if chosen.accuracy is None:
        return None
    plt = _pyplot()

    matrix = chosen.accuracy.confusion
    figure, axis = plt.subplots(figsize=(5.5, 5))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    if len(matrix) <= 20:
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                color = "white" if count > matrix.max() / 2 else "black"
                axis.text(col, row, str(count), ha="center", va="center", fontsize=7, color=color)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{report.model} {chosen.variant}: top-1 {100 * chosen.top1:.2f}%")
    content = _png(figure)
    plt.close(figure)
    return content

"""The report's pictures: the score against size and latency, the search's candidates, the confusion matrix.

Each picture is built as a matplotlib figure by a ``*_figure`` function (tests look at its marks, limits and
labels before anything is drawn) and rendered to PNG bytes by its ``plot_*`` function.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tflite_opt.results.measures import LatencyStats
from tflite_opt.results.report import ConvertReport, VariantResult

# Beyond this many classes a matrix's cells are too small to read: the most confused pairs are drawn instead.
MANY_CLASSES = 20
CONFUSED_PAIRS = 15
# Class names longer than this are cut on the axes (report.json keeps them whole).
NAME_CHARS = 14
MARKERS = "osD^vPXh<>"
LATENCY_LABEL = "latency of one image (ms)\nmarker: median run; whisker: fastest run to p90"
# The least colour scale of the errors' shares: below it a single stray image would look as alarming as a pattern.
LEAST_ERROR_SCALE = 0.05


def _pyplot():
    """matplotlib's pyplot drawing off-screen (no display on CI machines or servers)."""
    import matplotlib  # deferred: a quarter of a second to import, and only the report files need it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # deferred, and imported after choosing the off-screen backend

    return pyplot


def _png(figure) -> bytes | None:
    """The figure as PNG bytes at the size a user opens it, and closed; None for no figure."""
    if figure is None:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def plotted(report: ConvertReport) -> list[str]:
    """The pictures a report gets: none of accuracy without evaluation data (empty axes tell nothing)."""
    measured = any(v.top1 is not None for v in report.variants)
    return [
        *(["tradeoff.png"] if measured else []),
        *(["confusion.png"] if report.chosen.accuracy is not None else []),
        *(["search.png"] if report.search is not None else []),
    ]


@dataclass(frozen=True)
class _Style:
    color: str
    marker: str


def _styles(names: Sequence[str]) -> dict[str, _Style]:
    """A colour and a marker per model, the same on every panel: ten colours, then the marker tells them apart."""
    return {name: _Style(f"C{i % 10}", MARKERS[(i + i // 10) % len(MARKERS)]) for i, name in enumerate(names)}


def latency_whisker(latency: LatencyStats) -> tuple[float, float]:
    """How far a latency's whisker reaches below and above its median run: down to the fastest run, up to p90."""
    return max(0.0, latency.p50 - latency.min), max(0.0, latency.p90 - latency.p50)


def _mark(axis, x: float, y: float, style: _Style, label: str, chosen: bool, filled: bool = True, xerr=None) -> None:
    """One model: its marker (a large star with a black edge where chosen, hollow where not ``filled``) and, given
    ``xerr`` (below, above), its whisker. The star goes under the other markers, which stay visible on it where two
    models measure alike."""
    from matplotlib.colors import to_rgba  # deferred: matplotlib is loaded only for the report's pictures

    # Translucent: a marker on another shows both shapes.
    face = to_rgba(style.color, 1.0 if chosen else 0.45) if filled else "white"
    axis.errorbar(
        x,
        y,
        xerr=None if xerr is None else [[xerr[0]], [xerr[1]]],
        fmt="*" if chosen else style.marker,
        markersize=17 if chosen else 9,
        markeredgewidth=1.5,
        color=style.color,
        markerfacecolor=face,
        markeredgecolor="black" if chosen else style.color,
        elinewidth=1.3,
        capsize=3,
        label=label,
        zorder=3 if chosen else 4,
    )


def _fit_scores(axis, scores: Sequence[float]) -> None:
    """The score axis (percent) fitted to the points and reference lines, with a margin for the markers."""
    low, high = min(scores), max(scores)
    margin = max(0.15 * (high - low), 0.25)
    # Nothing scores above 100%: no ticks there, only room for the markers.
    top = 100.0 + 0.15 * margin if high <= 100.0 < high + margin else high + margin
    axis.set_ylim(low - margin, top)


def _fit_costs(axis, highs: Sequence[float]) -> None:
    """A cost axis from zero (so that one cost read as a share of another is true) to past the farthest whisker."""
    axis.set_xlim(0.0, 1.1 * max(highs) if max(highs) > 0 else 1.0)
    axis.locator_params(axis="x", nbins=6)
    axis.grid(alpha=0.3)


def _legend_below(figure, axis, columns: int = 3) -> None:
    """The models' legend under the panels: labels beside the points collide where models measure alike."""
    handles, labels = axis.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=max(1, min(columns, len(labels))), fontsize=9)


def _figures(name: str, chosen: bool, kib: float, latency: LatencyStats, score: float) -> str:
    """A model's legend entry with its figures, which tell models apart where their markers coincide."""
    return f"{name}{' (chosen)' if chosen else ''}: {kib:.0f} KiB, {latency.p50:.3g} ms, {score:.2f}%"


def tradeoff_figure(report: ConvertReport):
    """The trade-off figure, not yet rendered: the score against gzip size and against latency, one marker per
    variant named in the legend, a star for the chosen one; None without any score.

    Latency is the median run (p50); its whisker reaches from the fastest run (min) to p90, the spread of repeated
    runs of one file: markers whose whiskers overlap are not measurably apart.
    """
    measured = [v for v in report.variants if v.top1 is not None]
    if not measured:
        return None
    figure, axes = _pyplot().subplots(1, 2, figsize=(10, 4.6), sharey=True, layout="constrained")
    styles, chosen = _styles([v.variant for v in measured]), report.chosen.variant
    for v in measured:
        marked, score = v.variant == chosen, 100 * v.top1
        label = _figures(v.variant, marked, v.gzip_size_bytes / 1024, v.latency, score)
        _mark(axes[0], v.gzip_size_bytes / 1024, score, styles[v.variant], label, marked)
        _mark(axes[1], v.latency.p50, score, styles[v.variant], "_nolegend_", marked, xerr=latency_whisker(v.latency))
    scores = [100 * v.top1 for v in measured]
    if report.keras_top1 is not None:
        scores.append(100 * report.keras_top1)
        keras = "Keras model" if report.labelled else "Keras model (the reference)"
        for axis, label in zip(axes, (keras, "_nolegend_"), strict=True):
            axis.axhline(100 * report.keras_top1, linestyle="--", linewidth=1, color="grey", label=label, zorder=1)
    _fit_scores(axes[0], scores)
    _fit_costs(axes[0], [v.gzip_size_bytes / 1024 for v in measured])
    _fit_costs(axes[1], [v.latency.p90 for v in measured])
    axes[0].set_xlabel("gzip size (KiB)")
    axes[1].set_xlabel(LATENCY_LABEL)
    axes[0].set_ylabel(f"{_score_label(report)} (%)")
    _legend_below(figure, axes[0])
    images = f"{report.eval_samples} {'' if report.labelled else 'unlabelled '}images"
    figure.suptitle(f"{report.model}: {_score_label(report)} on {images}, against size and latency")
    return figure


def _score_label(report: ConvertReport) -> str:
    return "top-1" if report.labelled else "agreement with the float model"


def plot_tradeoff(report: ConvertReport) -> bytes | None:
    """PNG of :func:`tradeoff_figure`: the score against gzip size and latency; None without any score."""
    return _png(tradeoff_figure(report))


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


def latency_front(latencies: Sequence[LatencyStats], scores: Sequence[float]) -> list[int]:
    """The Pareto front by latency where only a measurable difference counts, as indices by median latency.

    A model is off the front when another scores at least as well and is faster beyond the noise (its p90 below this
    one's fastest run), or scores better at a latency within the noise (their fastest-run-to-p90 ranges overlap).
    """

    def beaten(i: int, j: int) -> bool:
        faster, slower = latencies[j].p90 < latencies[i].min, latencies[i].p90 < latencies[j].min
        return (faster and scores[j] >= scores[i]) or (not faster and not slower and scores[j] > scores[i])

    indices = range(len(scores))
    front = [i for i in indices if not any(beaten(i, j) for j in indices if j != i)]
    return sorted(front, key=lambda i: latencies[i].p50)


def search_figure(report: ConvertReport):
    """The search figure, not yet rendered: every measured candidate's score against gzip size and latency (whisker
    as in :func:`tradeoff_figure`), the Pareto fronts, the budget and Keras lines; None without a search.

    Filled markers are within the budget, hollow ones over it, the star is chosen. The latency front only steps
    where latencies differ beyond their whiskers (:func:`latency_front`).
    """
    outcome = report.search
    if outcome is None:
        return None
    measured = [c for c in outcome.candidates if c.measured is not None]
    figure, axes = _pyplot().subplots(1, 2, figsize=(11, 5), sharey=True, layout="constrained")
    styles, chosen = _styles([c.variant for c in measured]), outcome.chosen.variant
    sizes = [c.gzip_bytes / 1024 for c in measured]
    latencies = [c.measured.latency for c in measured]
    scores = [100 * c.top1 for c in measured]
    fronts = (pareto_front(list(zip(sizes, scores, strict=True))), latency_front(latencies, scores))
    for axis, front, costs, label in zip(
        axes, fronts, (sizes, [t.p50 for t in latencies]), ("Pareto front", ""), strict=True
    ):
        axis.plot([costs[i] for i in front], [scores[i] for i in front], color="grey", alpha=0.6, label=label or "_")
    for i, c in enumerate(measured):
        marked = c.variant == chosen
        label = _figures(c.variant, marked, sizes[i], latencies[i], scores[i]) + ("" if c.within_budget else " (over)")
        _mark(axes[0], sizes[i], scores[i], styles[c.variant], label, marked, c.within_budget)
        whisker = latency_whisker(latencies[i])
        _mark(axes[1], latencies[i].p50, scores[i], styles[c.variant], "_", marked, c.within_budget, whisker)
    floor = 100 * outcome.keras_top1 - outcome.config.max_accuracy_drop
    for axis, labels in zip(axes, ((f"budget ({floor:.2f}%)", "Keras model"), ("_", "_")), strict=True):
        axis.axhline(floor, linestyle="--", linewidth=1, color="grey", label=labels[0], zorder=1)
        axis.axhline(100 * outcome.keras_top1, linestyle=":", linewidth=1, color="black", label=labels[1], zorder=1)
    _fit_scores(axes[0], [*scores, floor, 100 * outcome.keras_top1])
    _fit_costs(axes[0], sizes or [0.0])
    _fit_costs(axes[1], [t.p90 for t in latencies] or [0.0])
    axes[0].set_xlabel("gzip size (KiB)")
    axes[1].set_xlabel(LATENCY_LABEL)
    axes[0].set_ylabel(f"{_score_label(report)} (%)")
    _legend_below(figure, axes[0])
    figure.suptitle(
        f"{report.model}: search candidates (filled: within the budget, hollow: over it; star: chosen; "
        "line: the Pareto front)"
    )
    return figure


def plot_search(report: ConvertReport) -> bytes | None:
    """PNG of :func:`search_figure`: every search candidate against size and latency; None without a search."""
    return _png(search_figure(report))


@dataclass(frozen=True)
class _Words:
    """How a confusion picture names its rows and columns: against the labels, or (without labels) against the
    float model's predictions, which then stand in for them."""

    rows: str
    columns: str
    title: str
    shares: str


def _confusion_words(report: ConvertReport, chosen: VariantResult) -> _Words:
    accuracy, name = chosen.accuracy, chosen.variant
    if report.labelled:
        title = f"{report.model} {name}: top-1 {100 * accuracy.top1:.2f}% on {accuracy.samples} images"
        return _Words("true class", f"{name} prediction", title, "errors: share of the true class's images")
    title = (
        f"{report.model} {name}: agrees with the float32 model on {100 * accuracy.top1:.2f}% "
        f"of {accuracy.samples} unlabelled images"
    )
    return _Words("float32 prediction", f"{name} prediction", title, "disagreements: share of the float32 class")


def class_names(report: ConvertReport, count: int) -> list[str]:
    """Each class index's name for the axes: the report's class mapping where it names the class, else the index;
    long names cut to :data:`NAME_CHARS`."""
    known = report.class_mapping.names if report.class_mapping is not None else ()
    names = [known[i] if i < len(known) else str(i) for i in range(count)]
    return [name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…" for name in names]


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum, so each class's row sums to 1 (a row without images stays 0)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def confused_pairs(matrix: np.ndarray, limit: int = CONFUSED_PAIRS) -> list[tuple[int, int]]:
    """The (row, column) cells off the diagonal with the most images, most first; ties by row share, then order."""
    shares = row_shares(matrix)
    cells = [(int(r), int(c)) for r, c in zip(*np.nonzero(matrix), strict=True) if r != c]
    return sorted(cells, key=lambda cell: (-matrix[cell], -shares[cell], cell))[:limit]


def _float_confusion(report: ConvertReport, chosen: VariantResult) -> np.ndarray | None:
    """The float32 reference's confusion matrix on the same images, where it is another variant and the images have
    labels (without labels the chosen variant's matrix already is against the float model)."""
    if not report.labelled or chosen.variant == report.reference:
        return None
    reference = next((v for v in report.variants if v.variant == report.reference), None)
    if (
        reference is None
        or reference.accuracy is None
        or reference.accuracy.confusion.shape != chosen.accuracy.confusion.shape
    ):
        return None
    return reference.accuracy.confusion


def _class_ticks(axis, names: Sequence[str]) -> None:
    ticks = range(len(names))
    axis.set_xticks(ticks, names, rotation=90 if max(len(n) for n in names) > 3 else 0, fontsize=8)
    axis.set_yticks(ticks, names, fontsize=8)


def _off_diagonal(plt, figure, axis, values: np.ndarray, names: Sequence[str], cmap: str, limits, label: str, fmt=None):
    """``values`` with the diagonal masked grey (on the errors' colour scale the right answers would leave every
    error near-white), and the empty cells white."""
    diagonal = np.eye(len(values), dtype=bool)
    axis.imshow(np.where(diagonal, 0.2, np.nan), cmap="Greys", vmin=0.0, vmax=1.0)  # NaN: transparent
    masked = np.ma.masked_array(values, mask=diagonal | (values == 0))
    colours = plt.get_cmap(cmap).with_extremes(bad="none")
    image = axis.imshow(masked, cmap=colours, vmin=limits[0], vmax=limits[1])
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.03, label=label, format=fmt)
    _class_ticks(axis, names)


def _shares_panel(plt, figure, axis, matrix: np.ndarray, names: Sequence[str], words: _Words) -> None:
    """Colour: each cell's share of its row (errors only); text: the image counts."""
    shares = row_shares(matrix)
    scale = max(LEAST_ERROR_SCALE, float(np.max(shares - np.diag(np.diag(shares)))))
    _off_diagonal(plt, figure, axis, shares, names, "Reds", (0.0, scale), words.shares, "{x:.0%}")
    fontsize = 8 if len(matrix) <= 12 else 6
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            dark = row != col and shares[row, col] > 0.6 * scale
            axis.text(
                col, row, str(count), ha="center", va="center", fontsize=fontsize, color="white" if dark else "black"
            )
    axis.set_xlabel(words.columns)
    axis.set_ylabel(words.rows)


def _change_panel(plt, figure, axis, change: np.ndarray, names: Sequence[str], words: _Words) -> None:
    """Cell by cell, the chosen variant's count minus float32's: red where quantization added an error, blue where it
    removed one; the diagonal (grey) tells the change in right answers."""
    limit = max(1, int(np.abs(change - np.diag(np.diag(change))).max()))
    _off_diagonal(plt, figure, axis, change, names, "RdBu_r", (-limit, limit), "images, against float32")
    for (row, col), delta in np.ndenumerate(change):
        if delta:
            color = "white" if row != col and abs(delta) > 0.6 * limit else "black"
            size = 8 if len(change) <= 12 else 6
            axis.text(col, row, f"{delta:+d}", ha="center", va="center", fontsize=size, color=color)
    axis.set_xlabel(words.columns)
    axis.tick_params(labelleft=False)  # the rows are the left panel's, level with it
    variant = words.columns.split()[0]
    axis.set_title(
        f"{variant} count − float32 count on the same images\nred: an error {variant} makes more often", fontsize=10
    )


def _matrix_figure(plt, matrix: np.ndarray, names: Sequence[str], words: _Words, reference: np.ndarray | None):
    change = None if reference is None else matrix - reference
    panels = 2 if change is not None and change.any() else 1
    side = max(4.5, 0.25 * len(matrix) + 2.5)
    figure, axes = plt.subplots(1, panels, figsize=(side * panels + 1.0, side), squeeze=False, layout="constrained")
    _shares_panel(plt, figure, axes[0][0], matrix, names, words)
    if panels == 2:
        _change_panel(plt, figure, axes[0][1], change, names, words)
    same = "\nthe float32 model's counts are the same in every cell" if change is not None and panels == 1 else ""
    figure.suptitle(f"{words.title}{same}", fontsize=11)
    return figure


def _pairs_figure(plt, matrix: np.ndarray, names: Sequence[str], words: _Words, reference: np.ndarray | None):
    """The most confused pairs as bars of image counts; float32's count of the same pair beside, where known."""
    pairs = confused_pairs(matrix)
    figure, axis = plt.subplots(figsize=(8.5, 0.36 * max(3, len(pairs)) + 1.6), layout="constrained")
    rows, totals = np.arange(len(pairs)), matrix.sum(axis=1)
    counts = [int(matrix[pair]) for pair in pairs]
    before = [int(reference[pair]) for pair in pairs] if reference is not None else []
    height = 0.4 if before else 0.7
    axis.barh(rows, counts, height=height, color="tab:red", label=words.columns.split()[0])
    if before:
        axis.barh(rows + height, before, height=height, color="grey", label="float32, same images")
        figure.legend(loc="outside lower center", ncol=2, fontsize=8)
    for i, (row, _) in enumerate(pairs):
        axis.text(
            counts[i], i, f" {counts[i]} of {totals[row]} ({counts[i] / totals[row]:.1%})", va="center", fontsize=8
        )
    axis.set_yticks(rows + (height / 2 if before else 0), [f"{names[r]} → {names[c]}" for r, c in pairs])
    axis.invert_yaxis()
    axis.set_xlim(0, 1.35 * max([*counts, *before, 1]))
    axis.set_xlabel("images")
    axis.set_ylabel(f"{words.rows} → {words.columns}")
    if not pairs:
        axis.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(
        f"{words.title}\nthe {len(pairs)} most confused pairs of {len(matrix)} classes (a matrix would be unreadable)",
        fontsize=11,
    )
    return figure


def confusion_figure(report: ConvertReport):
    """The confusion figure of the chosen variant, not yet rendered; None without evaluation data.

    Up to :data:`MANY_CLASSES` classes: the matrix with class names, colour the share of each row (the diagonal
    grey), text the counts; beside it, with labels and a float32 variant whose counts differ, the change against
    float32 cell by cell. More classes: the most confused pairs. Without labels, rows are the float32 model's
    predictions, so the matrix shows where the variant disagrees with it.
    """
    chosen = report.chosen
    if chosen.accuracy is None:
        return None
    plt = _pyplot()
    matrix = chosen.accuracy.confusion
    names = class_names(report, len(matrix))
    words = _confusion_words(report, chosen)
    reference = _float_confusion(report, chosen)
    if len(matrix) > MANY_CLASSES:
        return _pairs_figure(plt, matrix, names, words, reference)
    return _matrix_figure(plt, matrix, names, words, reference)


def plot_confusion(report: ConvertReport) -> bytes | None:
    """PNG of :func:`confusion_figure`: the chosen variant's confusions; None without evaluation data."""
    return _png(confusion_figure(report))

"""The smallest full-int8 model within an accuracy budget: ``convert --max-accuracy-drop D``.

This stage is the search's logic on figures: which candidate to try next, when to
stop, which one wins. :mod:`tflite_opt.jobs.search` builds and measures the
candidates it asks for.

Every step converted, verified and measured on the held-out evaluation set
against the Keras model's top-1:

1. Full int8, when post-training quantization (PTQ) loses more than D points:
   with ``--qat``, quantization-aware training first (``int8-qat``: still
   full-integer, which an NPU, DSP or Edge TPU needs); then, as the last resort,
   selective quantization: TensorFlow's QuantizationDebugger ranks the layers by
   their int8 error (:mod:`tflite_opt.stages.layer_errors`); the worst is kept in
   float, the rest re-ranked, until the drop is within D (or ``max_float_layers``
   are float).
2. Sparsity, with ``--prune``: an ascending grid of sparsities, each level
   fine-tuned from the previous level's pruned model (so the work is reused)
   and, with ``--cluster N``, clustered; where a level's PTQ misses D and ``--qat``
   is given, the scheme that keeps its zeros and shared values (``-pqat``,
   ``-pcqat``) is tried. Stops after two levels in a row miss, then one bisection
   step between the highest level within D and the next one. On Ray (``--ray-address``) the schedule is parallel
   instead: every level from the float model at once, then the bisection step.
3. Clustering without pruning (``--cluster N``): one clustered candidate, and its
   ``-cqat`` where its PTQ misses.

The chosen candidate is the smallest (gzip) within D; without one, the one
that loses the least, and the run says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tflite_opt.results.search import Candidate, choose


def search_int8(
    first: Candidate,
    quantization_aware: Callable[[], Candidate] | None,
    float_layers: Callable[[Candidate], Sequence[Candidate]],
) -> list[Candidate]:
    """The full-int8 candidates: ``first`` (post-training quantization); where it misses the budget,
    the quantization-aware one (when given), then, as the last resort, layers kept in float.

    Args:
        quantization_aware: makes the int8-qat candidate; None where QAT is not asked for.
        float_layers: the candidates with layers kept in float, ``first`` first (:func:`search_float_layers`).
    """
    tried = [first]
    if first.within_budget:
        return tried
    if quantization_aware is not None:
        tried.append(quantization_aware())
        if tried[-1].within_budget:
            return tried
    return tried + [c for c in float_layers(first) if c is not first]


def search_float_layers(
    first: Candidate,
    rank: Callable[[tuple[str, ...]], Sequence[str]],
    make: Callable[[tuple[str, ...], Candidate], Candidate],
    max_float_layers: int,
) -> list[Candidate]:
    """Keep the worst-ranked layer in float, one more per step, until a candidate is within the budget.

    Args:
        first: the full-int8 candidate.
        rank: layers worst first, given the layers already in float.
        make: the candidate with these layers in float, derived from the given one.
        max_float_layers: stop after this many layers are float.
    """
    tried = [first]
    float_layers: tuple[str, ...] = ()
    while not tried[-1].within_budget and len(float_layers) < max_float_layers:
        worst = [layer for layer in rank(float_layers) if layer not in float_layers]
        if not worst:
            break
        float_layers += (worst[0],)
        tried.append(make(float_layers, tried[-1]))
    return tried


def search_sparsity(
    levels: Sequence[float],
    make: Callable[[float, Candidate | None], Sequence[Candidate]],
    refine: bool = True,
    bad_drop: float = 5.0,
) -> list[Candidate]:
    """Ascending sparsities, each continuing from the previous level; then one bisection step.

    A level is judged by its best candidate (post-training quantization, and the quantization-aware one
    where that missed); a level whose candidates all failed counts as a miss. Stops after two levels in a row
    miss the budget, or one loses more than
    ``bad_drop`` points (accuracy rarely comes back with more pruning). The bisection tries the middle
    of the highest level within the budget and the next level, starting from the former.

    Args:
        levels: sparsities, ascending.
        make: the candidates of a sparsity, continuing from the given level's (None: the dense model).
    """
    tried: list[Candidate] = []
    best_by_level: list[Candidate] = []
    for level in levels:
        # A level that failed is a miss, not a collapse: the next continues from the last level that was made.
        found = make(level, next((c for c in reversed(best_by_level) if c.failure is None), None))
        tried += found
        best_by_level.append(choose(found))
        missed_twice = len(best_by_level) >= 2 and not any(c.within_budget for c in best_by_level[-2:])
        if missed_twice or (best_by_level[-1].failure is None and best_by_level[-1].drop > bad_drop):
            break
    bisection = _bisection(best_by_level) if refine else None
    if bisection is not None:
        tried += make(bisection[0], bisection[1])
    return tried


def _bisection(best_by_level: Sequence[Candidate]) -> tuple[float, Candidate] | None:
    """The middle of the highest level within the budget and the next level tried above it, with the former; None
    where no level is within the budget, none was tried above it, or the middle was tried."""
    within = [c for c in best_by_level if c.within_budget]
    if not within:
        return None
    best = max(within, key=lambda c: c.sparsity)
    above = [c.sparsity for c in best_by_level if c.sparsity > best.sparsity]
    if not above:
        return None
    middle = _middle(best.sparsity, min(above))
    if any(abs(middle - c.sparsity) <= 1e-9 for c in best_by_level):
        return None
    return middle, best


def search_sparsity_parallel(
    levels: Sequence[float],
    make: Callable[[Sequence[float], Sequence[float]], Sequence[Sequence[Candidate]]],
    refine: bool = True,
) -> list[Candidate]:
    """Every sparsity at once, each from the float model (so that workers can build them side by side); then the
    same bisection step as :func:`search_sparsity`, between the highest level within the budget and the next.

    Unlike the chained search it cannot stop early: every level is built, and the bisection is one more round.
    The middles the bisection may ask for are named ahead, highest first, so that workers the levels leave idle
    can start them; only the one asked for counts.

    Args:
        levels: sparsities, ascending.
        make: (sparsities, middles a later call may ask for) -> the candidates of each of these sparsities
            (post-training, and quantization-aware where that missed), each from the float model, in the order
            given.
    """
    found = make(levels, bisection_middles(levels) if refine else ())
    tried = [c for level in found for c in level]
    bisection = _bisection([choose(level) for level in found]) if refine else None
    if bisection is not None:
        tried += [c for level in make([bisection[0]], ()) for c in level]
    return tried


def bisection_middles(levels: Sequence[float]) -> list[float]:
    """The middle of each two neighbouring levels, highest first: the sparsities a bisection step can ask for."""
    ordered = sorted(levels)
    middles = {_middle(low, high) for low, high in zip(ordered, ordered[1:], strict=False)}
    return sorted(middles - set(ordered), reverse=True)


def _middle(low: float, high: float) -> float:
    """The sparsity a bisection step tries between two levels (rounded, so that both schedules name it alike)."""
    return round((low + high) / 2, 3)

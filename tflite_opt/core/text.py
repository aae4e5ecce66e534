"""Plain-text tables, as the terminal shows them."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> list[str]:
    """A text table: the header, a line of dashes, the rows; the first ``left`` columns flush left,
    the others flush right."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def by_reason(named: Sequence[tuple[str, str]], listed: int = 6) -> list[str]:
    """``(name, reason)`` pairs as one ``names: reason`` per reason, in first-seen order, at most ``listed`` names
    each (a MobileNetV3 leaves 56 TF operations out of quantization-aware training for one reason)."""
    grouped: dict[str, list[str]] = {}
    for name, reason in named:
        grouped.setdefault(reason, []).append(name)
    return [
        ", ".join(names[:listed]) + (f" and {len(names) - listed} more" if len(names) > listed else "") + f": {reason}"
        for reason, names in grouped.items()
    ]

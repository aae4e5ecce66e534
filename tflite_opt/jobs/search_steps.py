"""Which candidate a search is on, of about how many, since when: the line a user follows a long search by."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from tflite_opt.core.config import ConvertConfig

log = logging.getLogger(__name__)


@dataclass
class SearchSteps:
    """Which candidate the search is on, of about how many (the search stops early, and adds remedies, layers
    kept in float and a bisection step as figures come in), since when: one line as each candidate starts."""

    expected: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, config: ConvertConfig) -> SearchSteps:
        """Plain int8, then the sparsity levels and their bisection step, or the clustered candidate."""
        search = config.search
        if config.prune is not None:
            return cls(1 + len(search.sparsities) + int(search.refine))
        return cls(1 + int(config.cluster is not None))

    def start(self, variant: str) -> None:
        """Say that ``variant``, the next candidate, starts (the estimate grows where the search went past it)."""
        self.done += 1
        self.expected = max(self.expected, self.done)
        elapsed = int(time.monotonic() - self.started)
        log.info(
            "search: candidate %d of about %d: %s (%d:%02d elapsed)",
            self.done,
            self.expected,
            variant,
            *divmod(elapsed, 60),
        )

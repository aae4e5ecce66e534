"""Keep native (C++) log lines of TensorFlow and LiteRT off the user's terminal.

TensorFlow writes CUDA probing and converter chatter straight to file
descriptor 2, which Python's own redirection cannot catch. Errors still reach
the user: the converter and interpreter raise Python exceptions carrying them.
``--verbose`` (TF_CPP_MIN_LOG_LEVEL=0) turns the silencing off.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TextIO


def verbose_native_logs() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[TextIO]:
    """Point file descriptor 2 at /dev/null for the duration of the block.

    Yields a stream to the real stderr, for output the user should see inside
    the block (a progress bar).
    """
    if verbose_native_logs():
        yield sys.stderr
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. some notebook kernels): nothing to silence
        yield sys.stderr
        return
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield terminal
    finally:
        terminal.close()
        os.dup2(saved, 2)
        os.close(saved)

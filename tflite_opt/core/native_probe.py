"""Load a .tflite file in a child process first, so a crash in native code cannot take the tool down.

The flatbuffer has passed the pure-Python structural check (core.tflite_file.read_tflite)
by then; the child also allocates tensors and runs one invoke on zeros, where a
malformed model most often crashes the interpreter.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tflite_opt.core.errors import ModelLoadError

MAX_MODEL_BYTES = 2 * 1024**3  # flatbuffers cannot address more
PROBE_SECONDS = 120

_CHILD = """
import sys
from tflite_opt.core.interpreter import TfliteRunner
TfliteRunner(open(sys.argv[1], "rb").read(), batch_size=1).invoke_on_zeros()
"""


def check_size(path: Path) -> None:
    """Refuse empty, header-only and oversized files before reading them."""
    size = path.stat().st_size
    if size < 8:
        raise ModelLoadError(f"{path} is {size} bytes: not a TFLite model")
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{path} is {size} bytes, more than a TFLite flatbuffer can hold")


def probe_in_child(path: Path, timeout: float = PROBE_SECONDS) -> None:
    """Create an interpreter for ``path``, allocate and invoke once, in a separate process.

    Raises:
        ModelLoadError: the child crashed (a signal), failed, or hung.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"{path}: the interpreter did not finish loading it within {timeout:.0f} s") from exc
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ModelLoadError(f"{path}: the TFLite interpreter crashed on this file ({name}); it is malformed")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise ModelLoadError(f"{path}: the TFLite interpreter cannot run this file: {reason}")

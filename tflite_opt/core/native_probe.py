"""Load a .tflite file in a child process first, so a crash in native code cannot take the tool down.

The flatbuffer has passed the pure-Python structural check (core.tflite_file.read_tflite)
by then; the child also allocates tensors and runs one invoke on zeros, where a
malformed model most often crashes the interpreter.
"""

from __future__ import annotations

import pickle
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


# Linux only: the resident set's peak (VmHWM) against what the process held once the interpreter's library was
# imported, in a fresh process per file (an allocator reuses what an earlier model freed, and would hide the next).
_MEMORY_CHILD = """
import pickle, sys
from tflite_opt.core.interpreter import TfliteRunner

def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(key + ":"))

content, threads, xnnpack, invokes = pickle.load(sys.stdin.buffer)
before = status("VmRSS")
runner = TfliteRunner(content, batch_size=1, num_threads=threads, use_xnnpack=xnnpack)
for _ in range(invokes):
    runner.invoke_on_zeros()
print(max(0, status("VmHWM") - before))
"""


def peak_memory_in_child(
    content: bytes, num_threads: int, use_xnnpack: bool, invokes: int = 3, timeout: float = PROBE_SECONDS
) -> int | None:
    """The peak memory (bytes of resident set) that creating the file's interpreter, allocating its tensors and
    invoking it add to a process that holds the file's bytes: the arena, the delegate's packed weights, the
    runtime's first use (as LiteRT's benchmark tool counts its footprint). Measured in a child process (a crash
    costs the figure, not the run); None where this system cannot tell (not Linux) or the child failed."""
    if not Path("/proc/self/status").exists():
        return None
    payload = pickle.dumps((content, num_threads, use_xnnpack, invokes))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD], input=payload, capture_output=True, timeout=timeout
        )
        return int(done.stdout) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        return None

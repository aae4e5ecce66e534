"""Fuzz the .tflite checks with hypothesis: mutated models must be refused cleanly or run.

Usage: python fuzz/fuzz_tflite.py [--examples 300] [--seed 0]   (needs the `fuzz` extra)

Each example mutates tests/corpus/tflite/valid.tflite (truncations, bit flips,
byte overwrites, spliced copies), then runs what the tool runs on a foreign
file: the pure-Python structural check in this process, and, if that passes,
the interpreter in a child process. Anything but ModelLoadError from either is
a finding: the input is saved as tests/corpus/tflite/found_<n>.tflite so the
test suite replays it from then on.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.native_probe import probe_in_child
from tflite_opt.core.tflite_file import read_tflite

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "tflite"
SEED = (CORPUS / "valid.tflite").read_bytes()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "splice"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            data = data[:position]
        elif kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            data[position : position + 4] = draw(st.binary(min_size=4, max_size=4))
        else:
            end = min(len(data), position + draw(st.integers(1, 64)))
            data[position:position] = data[position:end]
    return bytes(data)


def check(content: bytes, folder: Path) -> str:
    """'refused', 'ran', or raises on a finding."""
    try:
        read_tflite(content, source="fuzzed")
    except ModelLoadError:
        return "refused"
    path = folder / "candidate.tflite"
    path.write_bytes(content)
    try:
        probe_in_child(path, timeout=60)
    except ModelLoadError:
        return "refused (interpreter)"
    return "ran"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    outcomes: dict[str, int] = {}
    findings: list[bytes] = []

    with tempfile.TemporaryDirectory() as folder:

        @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(mutated())
        def run(content: bytes) -> None:
            try:
                outcome = check(content, Path(folder))
            except Exception as exc:  # a finding: anything the tool does not turn into ModelLoadError
                findings.append(content)
                outcome = f"FINDING {type(exc).__name__}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        seed(args.seed)(run)()
    for i, content in enumerate(findings):
        (CORPUS / f"found_{i}.tflite").write_bytes(content)
    print(f"{args.examples} mutated models: {outcomes}; {len(findings)} findings saved under {CORPUS}")


if __name__ == "__main__":
    main()

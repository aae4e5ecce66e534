"""Plain-text tables."""

from tflite_opt.core.text import aligned


def test_the_first_columns_are_flush_left_and_the_others_flush_right():
    lines = aligned(("name", "size"), [("a", "10"), ("longer", "2")], left=1)
    assert lines == ["name    size", "------  ----", "a         10", "longer     2"]

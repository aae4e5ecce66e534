"""Plain-text tables."""

from tflite_opt.core.text import aligned, by_reason


def test_the_first_columns_are_flush_left_and_the_others_flush_right():
    lines = aligned(("name", "size"), [("a", "10"), ("longer", "2")], left=1)
    assert lines == ["name    size", "------  ----", "a         10", "longer     2"]


def test_names_sharing_a_reason_are_said_once_and_a_long_list_is_cut_with_a_count():
    named = [(f"op{i}", "unsupported") for i in range(8)] + [("pool", "same scale"), ("op8", "unsupported")]
    assert by_reason(named, listed=3) == ["op0, op1, op2 and 6 more: unsupported", "pool: same scale"]
    assert by_reason([]) == []

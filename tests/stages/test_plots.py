"""The report's pictures: the Pareto front, and that each plot is a PNG."""

from tflite_opt.stages.plots import pareto_front


def test_pareto_front_orders_the_points_by_cost():
    points = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0), (2.0, 93.0)]
    front = pareto_front(points)
    assert front == [3, 0, 1]


def test_pareto_front_keeps_only_points_nothing_beats_on_both_axes():
    points = [(100.0, 98.0), (50.0, 98.5), (60.0, 97.0), (20.0, 90.0), (50.0, 98.5)]
    front = pareto_front(points)
    assert [points[i] for i in front] == [(20.0, 90.0), (50.0, 98.5), (50.0, 98.5)]

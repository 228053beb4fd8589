import math

import pytest

from diffjax.tuning import Axis, counts, scales, tune


def test_an_optimum_beyond_the_edge_of_a_scale_grid_is_reached_multiplicatively():
    best, _, info = tune(lambda p: -(math.log(p["lam"]) - math.log(0.02)) ** 2, {"lam": scales(0.1, 0.2, 0.4)})
    assert best["lam"] == pytest.approx(0.025) and info["at_bound"] == []
    assert info["grid"]["lam"][:3] == pytest.approx([0.0125, 0.025, 0.05])


def test_a_count_grid_grows_additively_and_a_bound_stops_it():
    best, _, info = tune(lambda p: p["n"], {"n": counts(10, 20, hi=55)})
    assert best["n"] == 55 and info["at_bound"] == ["n"] and info["grid"]["n"] == [10, 20, 30, 40, 50, 55]


def test_interior_optimum_needs_no_extension_and_each_point_is_scored_once():
    calls = []

    def score(p):
        calls.append(p)
        return -(p["a"] - 2) ** 2 - (p["b"] - 3) ** 2

    best, value, info = tune(score, {"a": counts(1, 2, 3), "b": counts(2, 3, 4)})
    assert best == {"a": 2, "b": 3} and value == 0 and len(calls) == info["evaluations"] == 9


def test_two_axes_each_move_inward():
    best, _, info = tune(lambda p: -(p["a"] - 7) ** 2 - (math.log(p["s"]) - math.log(8)) ** 2,
                         {"a": counts(1, 2), "s": scales(0.5, 1.0)})
    assert best == {"a": 7, "s": 8.0} and info["at_bound"] == []


def test_a_grid_that_is_not_increasing_is_rejected():
    with pytest.raises(ValueError, match="strictly increasing"):
        tune(lambda p: 0.0, {"lam": Axis((0.2, 0.1))})

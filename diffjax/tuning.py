"""Grid search whose grid grows when the best value sits on its edge.

A method's parameters are `Axis`es. After scoring the product grid, every axis whose best value
is its first or last entry is extended one step beyond it (multiplicatively for scales such as
lam, t, sigma, kappa; additively for counts), and the new points are scored, until the best is
interior on every axis or a bound stops it. The result says which axes a bound stopped.
"""

import itertools
import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Axis:
    """Initial values (increasing), how to extend them, and the bounds extension may not cross."""

    values: tuple
    scale: bool = True          # extend by the ratio of the two outermost values (else their difference)
    lo: float = 0.0
    hi: float = math.inf
    integer: bool = False

    def beyond(self, vals: list, upward: bool):
        """The next value past the low or high edge of `vals`, or None when a bound stops it."""
        a, b = (vals[-2], vals[-1]) if upward else (vals[1], vals[0])
        new = b * (b / a) if self.scale else b + (b - a)
        if self.integer:
            new = int(round(new))
        new = min(max(new, self.lo), self.hi)
        return None if new == b or new in vals else new


def scales(*values, lo=1e-4, hi=1e3) -> Axis:
    return Axis(tuple(values), True, lo, hi)


def counts(*values, lo=1, hi=1000) -> Axis:
    return Axis(tuple(values), False, lo, hi, integer=True)


def tune(score: Callable[[dict], float], axes: dict, max_rounds: int = 12):
    """Maximises score(params) over the growing grid of `axes` (name -> Axis).

    Returns (best params, best score, info) with info = {"at_bound": [axes whose best value sits on a
    bound or the round limit], "evaluations": number of points scored, "grid": final values per axis}.
    """
    for name, axis in axes.items():
        if list(axis.values) != sorted(set(axis.values)):
            raise ValueError(f"grid of {name!r} must be strictly increasing, got {axis.values}")
    vals = {k: list(a.values) for k, a in axes.items()}
    cache = {}
    for round_ in range(max_rounds + 1):
        for point in itertools.product(*vals.values()):
            if point not in cache:
                cache[point] = score(dict(zip(vals, point)))
        best = max(itertools.product(*vals.values()), key=lambda p: cache[p])
        extended, stopped = False, set()
        for (name, axis), v in zip(axes.items(), best):
            vs = vals[name]
            if len(vs) < 2 or 0 < vs.index(v) < len(vs) - 1:
                continue
            new = None if round_ == max_rounds else axis.beyond(vs, upward=vs.index(v) == len(vs) - 1)
            if new is None:
                stopped.add(name)
            else:
                vals[name] = sorted(vs + [new])
                extended = True
        if not extended:
            break
    return dict(zip(vals, best)), cache[best], {"at_bound": sorted(stopped), "evaluations": len(cache),
                                                  "grid": vals}

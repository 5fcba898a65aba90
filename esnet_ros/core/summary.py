"""Summary statistics and JSON clean-up shared by every tool that reports numbers.

The demo, the soak test, the benchmarks and ``esnet evaluate`` all summarize lists of timings and write
JSON reports; these are the one definition of each (NumPy only, no torch, no ROS).

- :func:`percentiles`: median/p90/p99 (any percentiles), mean, min, max and count of a list of values,
  ``None`` for each statistic when the list is empty (a run that measured nothing still reports);
- :func:`summarize`: a benchmark's timings (ms) as median, p90, min and the frame rate of the median;
  an empty list is an error (a benchmark that timed nothing is a bug);
- :func:`json_safe`: NaN -> ``None``, recursively, tuples -> lists (JSON has no NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["percentiles", "summarize", "json_safe"]


def _key(q: int) -> str:
    return "median" if q == 50 else f"p{q}"


def percentiles(values: Iterable[float], qs: Iterable[int] = (50, 90, 99)) -> dict[str, float | int | None]:
    """``{"median", "p90", "p99", "mean", "min", "max", "count"}`` (``None`` where there are no values).

    ``qs`` names the percentiles (50 is reported as ``"median"``, others as ``"pNN"``); values are
    rounded to 3 decimals.
    """
    v = np.asarray(list(values), np.float64)
    qs = tuple(qs)
    if v.size == 0:
        return {**{_key(q): None for q in qs}, "mean": None, "min": None, "max": None, "count": 0}
    out: dict[str, Any] = {_key(q): round(float(np.percentile(v, q)), 3) for q in qs}
    out.update(
        mean=round(float(v.mean()), 3), min=round(float(v.min()), 3), max=round(float(v.max()), 3), count=int(v.size)
    )
    return out


def summarize(times_ms: Iterable[float]) -> dict[str, float | None]:
    """``{"median_ms", "p90_ms", "min_ms", "fps"}`` of a list of timings in milliseconds.

    ``fps`` is the rate of the median (``None`` for a zero median).  Raises ``ValueError`` for no timings.
    """
    p = percentiles(times_ms, (50, 90))
    if p["count"] == 0:
        raise ValueError("no timings to summarize; time at least one run (e.g. --runs 1)")
    median = float(p["median"])
    return {
        "median_ms": median,
        "p90_ms": p["p90"],
        "min_ms": p["min"],
        "fps": round(1000.0 / median, 2) if median > 0 else None,
    }


def json_safe(value: Any) -> Any:
    """NaN -> ``None``, recursively through dicts, lists and tuples (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

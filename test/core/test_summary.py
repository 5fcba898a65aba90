"""The one summary helper: percentiles, a benchmark's timing summary and JSON clean-up."""

import json
import math

import numpy as np
import pytest

from esnet_ros.core.summary import json_safe, percentiles, summarize


def test_percentiles():
    p = percentiles(np.arange(1, 101, dtype=float), (50, 90))
    assert p["median"] == pytest.approx(50.5) and p["p90"] == pytest.approx(90.1)
    assert (p["min"], p["max"], p["count"]) == (1.0, 100.0, 100)
    assert percentiles([], (50, 90))["median"] is None
    assert set(percentiles([1.0, 2.0])) == {"median", "p90", "p99", "mean", "min", "max", "count"}


def test_summarize_reports_median_rate_and_refuses_nothing():
    s = summarize([4.0, 1.0, 2.0, 3.0, 10.0])
    assert s == {"median_ms": 3.0, "p90_ms": pytest.approx(7.6), "min_ms": 1.0, "fps": pytest.approx(333.33)}
    with pytest.raises(ValueError, match="no timings to summarize"):
        summarize([])


def test_json_safe_replaces_nan_recursively():
    data = {"miou": math.nan, "per_class": [0.5, math.nan], "pair": (1, math.nan), "name": "x"}
    out = json_safe(data)
    assert out == {"miou": None, "per_class": [0.5, None], "pair": [1, None], "name": "x"}
    assert "NaN" not in json.dumps(out)

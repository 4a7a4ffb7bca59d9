"""The profile of a fit on the boundary (lme4's Dyestuff2: the batch variance estimated at zero).

Whether the optimizer ends at θ = 0 exactly or at 1e-13 is a matter of rounding; the profile's first
step in the log of a standard deviation was SE·z/σ̂_b, unbounded as σ̂_b → 0, so it evaluated ζ at an
infinite standard deviation (NaN: "array must not contain infs or NaNs") in some runs and not in
others. Its intervals must not depend on which, nor on what else the machine is doing.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm

from .study import STUDY, load_json


def _data():
    return pd.read_csv(STUDY / "dyestuff2.csv", dtype={"Batch": str})


def _intervals(reml: bool, theta0=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sparselmm.SingularFitWarning)
        model = sparselmm.LinearMixedModel("Yield ~ 1 + (1 | Batch)", _data(), reml=reml)
        fit = model.fit(theta0=theta0)
        return fit, fit.confint(method="profile")


@pytest.mark.parametrize("kind", ["reml", "ml"])
def test_boundary_profile_as_lme4(kind):
    ref = load_json("dyestuff2_profile")[kind]
    fit, ci = _intervals(kind == "reml")
    assert fit.theta.iloc[0] < 1e-6  # on the boundary, as lme4's (exactly 0 there)
    for name, row in ref["profile"].items():
        lower, upper = ci.loc[name]
        if row["lower"] == 0:
            assert lower == 0
        else:
            assert lower == pytest.approx(row["lower"], rel=1e-3)  # lme4 interpolates a spline
        assert upper == pytest.approx(row["upper"], rel=1e-3)


def test_boundary_profile_is_the_same_from_zero_exactly():
    """Started at θ = 0 the fit stays there exactly; the intervals equal those from θ̂ ≈ 1e-10."""
    fit, ci = _intervals(True)
    at_zero, ci0 = _intervals(True, theta0=np.zeros(1))
    assert at_zero.theta.iloc[0] == 0.0 or at_zero.theta.iloc[0] != fit.theta.iloc[0]
    np.testing.assert_allclose(ci0.to_numpy(), ci.to_numpy(), rtol=1e-7, atol=1e-9)


def test_boundary_profile_under_concurrent_load():
    """Three profiles while two other processes keep both cores busy: the same intervals each time."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        runs = [_intervals(reml)[1].to_numpy() for _ in range(3) for reml in (True, False)]
    finally:
        for p in burners:
            p.kill()
    for a, b in zip(runs[:2], runs[2:4]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[:2], runs[4:]):
        np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(np.concatenate(runs)))

"""The synthetic data generators: determinism, shape, levels, and a fit that recovers the truth."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm.datasets import (
    CROSSED_FORMULA,
    NESTED_FORMULA,
    RATINGS_FORMULA,
    simulate_crossed,
    simulate_nested,
    simulate_ratings,
)


@pytest.fixture(scope="module")
def crossed() -> pd.DataFrame:
    return simulate_crossed(50_000, seed=1)


@pytest.fixture(scope="module")
def nested() -> pd.DataFrame:
    return simulate_nested(20_000, seed=1)


# --- determinism -------------------------------------------------------------

@pytest.mark.parametrize("gen", [simulate_crossed, simulate_nested])
def test_same_seed_same_frame(gen):
    pd.testing.assert_frame_equal(gen(5_000, seed=7), gen(5_000, seed=7))


@pytest.mark.parametrize("gen", [simulate_crossed, simulate_nested])
def test_different_seed_different_frame(gen):
    a, b = gen(5_000, seed=1), gen(5_000, seed=2)
    assert not np.allclose(a["y"].to_numpy(), b["y"].to_numpy())


def test_default_seed_is_zero():
    pd.testing.assert_frame_equal(simulate_crossed(1_000), simulate_crossed(1_000, seed=0))
    pd.testing.assert_frame_equal(simulate_nested(1_000), simulate_nested(1_000, seed=0))


# --- shape, columns, missing values --------------------------------------------

def test_crossed_shape_and_columns(crossed):
    assert crossed.shape == (50_000, 6)
    assert list(crossed.columns) == ["y", "x", "treat", "student", "item", "dept"]
    assert crossed["y"].dtype == np.float64 and crossed["x"].dtype == np.float64
    assert not crossed.isna().any().any()
    assert np.isfinite(crossed[["y", "x"]].to_numpy()).all()


def test_nested_shape_and_columns(nested):
    assert nested.shape == (20_000, 3)
    assert list(nested.columns) == ["y", "time", "subject"]
    assert not nested.isna().any().any()
    assert np.isfinite(nested[["y", "time"]].to_numpy()).all()
    assert nested["time"].between(0.0, 5.0).all()


def test_grouping_columns_are_string_factors(crossed, nested):
    for df, cols in ((crossed, ["treat", "student", "item", "dept"]), (nested, ["subject"])):
        for c in cols:
            assert isinstance(df[c].dtype, pd.CategoricalDtype), c
            assert all(isinstance(v, str) for v in df[c].cat.categories[:5]), c


# --- levels ------------------------------------------------------------------

def _used_levels(col: pd.Series) -> int:
    return int(col.nunique())


def test_crossed_level_counts(crossed):
    n = len(crossed)
    for col, k in (("student", n // 50), ("item", n // 500), ("dept", 20)):
        assert _used_levels(crossed[col]) == k, col
        # no empty levels: every declared category occurs
        assert len(crossed[col].cat.categories) == k, col
        assert (crossed[col].value_counts() > 0).all(), col
    assert set(crossed["treat"]) == {"a", "b"}
    frac_b = (crossed["treat"] == "b").mean()
    assert 0.45 < frac_b < 0.55


@pytest.mark.parametrize("n", [20, 37, 999, 10_000, 12_345])
def test_crossed_no_empty_levels_small(n):
    df = simulate_crossed(n, seed=3)
    assert df["student"].nunique() == max(1, n // 50)
    assert df["item"].nunique() == max(20, n // 500)
    assert df["dept"].nunique() == 20
    assert df["treat"].nunique() == 2


def test_crossed_items_nested_in_departments(crossed):
    depts_per_item = crossed.groupby("item", observed=True)["dept"].nunique()
    assert (depts_per_item == 1).all()


def test_crossed_item_popularity_is_skewed(crossed):
    counts = crossed["item"].value_counts()
    assert counts.max() >= 4 * counts.median()


def test_crossed_students_roughly_balanced(crossed):
    counts = crossed["student"].value_counts()
    assert abs(counts.mean() - 50) < 1e-9
    assert counts.max() < 3 * 50


def test_nested_level_counts(nested):
    n = len(nested)
    assert nested["subject"].nunique() == n // 10
    assert len(nested["subject"].cat.categories) == n // 10
    assert simulate_nested(1_000, n_subjects=37)["subject"].nunique() == 37
    assert simulate_nested(50, n_subjects=50)["subject"].nunique() == 50
    assert simulate_nested(5)["subject"].nunique() == 1


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=10, n_subjects=11), dict(n=10, n_subjects=0)])
def test_nested_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        simulate_nested(**kwargs)


def test_crossed_too_small():
    with pytest.raises(ValueError):
        simulate_crossed(19)


# --- the generating model ------------------------------------------------------

def test_nested_subject_slopes_have_promised_spread():
    """Per-subject least-squares lines: their spread is the truth plus estimation noise."""
    df = simulate_nested(60_000, seed=5, n_subjects=2_000)
    g = df.groupby("subject", observed=True)
    t = df["time"] - g["time"].transform("mean")
    slope = (t * df["y"]).groupby(df["subject"], observed=True).sum() / (t**2).groupby(
        df["subject"], observed=True).sum()
    assert abs(slope.mean() - 0.7) < 0.05
    # var(slope_hat) = 0.25 + noise var ≈ 0.25 + 1 / (30 · 25/12) ≈ 0.266
    assert 0.22 < slope.var() < 0.31


def test_crossed_fixed_effects_by_ols(crossed):
    """OLS is unbiased for the fixed effects here; x and treat are independent of the groups."""
    X = np.column_stack([np.ones(len(crossed)), crossed["x"], crossed["treat"] == "b"]).astype(float)
    beta = np.linalg.lstsq(X, crossed["y"].to_numpy(), rcond=None)[0]
    assert abs(beta[1] - 0.5) < 0.03
    assert abs(beta[2] - 0.2) < 0.05


def test_nested_fit_recovers_truth():
    df = simulate_nested(3_000, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sparselmm.fit(NESTED_FORMULA, df)
    truth = pd.Series({"(Intercept)": 2.0, "time": 0.7})
    z = (result.fe_params[truth.index] - truth) / result.bse_fe[truth.index]
    assert (z.abs() < 4).all(), z
    assert abs(result.sigma - 1.0) < 0.08


def test_crossed_formula_fits():
    df = simulate_crossed(20_000, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sparselmm.fit(CROSSED_FORMULA, df)
    truth = pd.Series({"x": 0.5, "treatb": 0.2})
    z = (result.fe_params[truth.index] - truth) / result.bse_fe[truth.index]
    assert (z.abs() < 4).all(), z
    assert abs(result.sigma - 1.0) < 0.05


# --- ratings (MovieLens-shaped) ------------------------------------------------

@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return simulate_ratings(100_000, 3_000, 600, seed=1)


def test_ratings_shape_levels_and_determinism(ratings):
    assert list(ratings.columns) == ["rating", "user", "item"] and len(ratings) == 100_000
    assert ratings.user.nunique() == 3_000 and ratings.item.nunique() == 600  # every level occurs
    assert list(ratings.user.cat.categories[:2]) == ["u0000", "u0001"]
    pd.testing.assert_frame_equal(ratings, simulate_ratings(100_000, 3_000, 600, seed=1))
    assert not ratings.rating.equals(simulate_ratings(100_000, 3_000, 600, seed=2).rating)


def test_ratings_activity_and_popularity_are_power_laws(ratings):
    """Like MovieLens-1M: the busiest user and the most popular item about 13× the mean."""
    for column in ("user", "item"):
        counts = ratings[column].value_counts()
        assert 9 < counts.max() / counts.mean() < 16, column
        top = counts.iloc[: len(counts) // 5].sum() / len(ratings)
        assert 0.5 < top < 0.7, column


def test_ratings_fit_recovers_the_generating_model(ratings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sparselmm.fit(RATINGS_FORMULA, ratings, reml=False)
    sd = dict(zip(fit.varcorr.grp, fit.varcorr.sdcor))
    assert sd["user"] == pytest.approx(0.45, rel=0.06)
    assert sd["item"] == pytest.approx(0.5, rel=0.12)  # 600 items: the item sd's own error is ~3 %
    assert sd["Residual"] == pytest.approx(0.85, rel=0.01)
    assert fit.fe_params["(Intercept)"] == pytest.approx(3.5, abs=0.1)


@pytest.mark.parametrize("args", [(10, 20, 5), (10, 5, 0), (0, 1, 1)])
def test_ratings_bad_sizes_are_refused(args):
    with pytest.raises(ValueError, match="must be at least"):
        simulate_ratings(*args)

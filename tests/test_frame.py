"""From formula and data to arrays: lme4's names, level orders, term order, missing data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm.frame import model_frame

from .test_sparse_backend import random_data


def test_fixed_effect_names_follow_r():
    df = random_data(0).assign(c=lambda d: d.c.astype(str))
    frame = model_frame("y ~ x * c + (1|a)", df)
    # R: (Intercept) x chi clo x:chi x:clo, "hi" is the reference (sorted first)
    assert frame.fe_names == ["(Intercept)", "x", "clo", "cmid", "x:clo", "x:cmid"]
    frame = model_frame("y ~ 0 + c + (1|a)", df)
    assert frame.fe_names == ["chi", "clo", "cmid"]
    frame = model_frame("y ~ (1|a)", df)
    assert frame.fe_names == ["(Intercept)"]
    np.testing.assert_array_equal(frame.X, np.ones((len(df), 1)))


def test_terms_sorted_by_levels_and_named_like_lme4():
    df = random_data(1)
    frame = model_frame("y ~ 1 + (1|c) + (1 + x|a) + (1|a:b)", df)
    assert [t.group for t in frame.terms] == ["a:b", "a", "c"]
    assert frame.terms[1].columns == ("(Intercept)", "x")
    levels = frame.terms[0].levels
    # a-major order of the levels that occur, labelled "a:b"
    pairs = sorted({(a, b) for a, b in zip(df.a, df.b)})
    assert list(levels) == [f"{a}:{b}" for a, b in pairs]
    codes = frame.terms[0].codes
    assert [levels[c] for c in codes[:10]] == [f"{a}:{b}" for a, b in zip(df.a[:10], df.b[:10])]


def test_nesting_expands_to_interaction():
    df = random_data(2)
    nested = sparselmm.LinearMixedModel("y ~ x + (1|a/b)", df)
    explicit = sparselmm.LinearMixedModel("y ~ x + (1|a) + (1|a:b)", df)
    theta = np.array([0.7, 1.3])
    assert nested.layout.theta_names == explicit.layout.theta_names
    assert nested.objective(theta) == explicit.objective(theta)


def test_categorical_levels_and_numeric_grouping():
    df = random_data(3)
    df["g"] = pd.Categorical(df.a, categories=list("GFEDCBAZ"))  # reversed, one unused level
    frame = model_frame("y ~ 1 + (1|g)", df)
    assert list(frame.terms[0].levels) == list("GFEDCBA")
    df["num"] = df.a.map({k: i * 10 for i, k in enumerate("ABCDEFG")})
    frame = model_frame("y ~ 1 + (1|num)", df)
    assert list(frame.terms[0].levels) == [0, 10, 20, 30, 40, 50, 60]


def test_categorical_inside_random_term():
    df = random_data(4)
    frame = model_frame("y ~ 1 + (0 + c|a)", df)
    assert frame.terms[0].columns == ("chi", "clo", "cmid")
    np.testing.assert_array_equal(frame.terms[0].X.sum(axis=1), 1.0)


def test_missing_values_dropped_with_warning_or_raised():
    df = random_data(5)
    df.loc[[3, 8], "x"] = np.nan
    df.loc[8, "a"] = None
    df.loc[20, "z"] = np.nan  # unused column: no effect
    before = df.copy()
    with pytest.warns(UserWarning, match="dropped 2 of 60 rows"):
        frame = model_frame("y ~ x + (1|a)", df)
    assert frame.n == 58 and list(frame.row_index[:4]) == [0, 1, 2, 4]
    with pytest.raises(sparselmm.DataError, match="'x'"):
        model_frame("y ~ x + (1|a)", df, missing="raise")
    pd.testing.assert_frame_equal(df, before)


def test_unknown_column_and_no_random_term():
    df = random_data(6)
    with pytest.raises(sparselmm.DataError, match="'w'"):
        model_frame("y ~ w + (1|a)", df)
    with pytest.raises(sparselmm.DataError, match="'g'"):
        model_frame("y ~ x + (1|g)", df)
    with pytest.raises(sparselmm.FormulaError, match="least squares"):
        model_frame("y ~ x", df)


def test_fit_does_not_modify_data():
    df = random_data(7)
    before = df.copy()
    sparselmm.fit("y ~ x * c + (1 + x|a) + (1|b)", df)
    pd.testing.assert_frame_equal(df, before)


def test_singular_fit_is_reported():
    """No group effect in the data: the variance goes to the boundary, flagged and warned."""
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"y": rng.normal(size=200), "g": rng.integers(0, 10, 200).astype(str)})
    with pytest.warns(sparselmm.SingularFitWarning):
        fit = sparselmm.fit("y ~ 1 + (1|g)", df)
    assert fit.singular and fit.theta.iloc[0] < 1e-4
    assert fit.varcorr.vcov[0] < 1e-6
    # the objective at the boundary is below every interior point tried
    model = fit.model
    assert all(model.objective([t]) >= fit.objective - 1e-9 for t in (0.01, 0.1, 0.5))


def test_rank_check_fast_and_exact_paths_agree():
    """Clearly independent columns skip the QR; near-aliased ones take it; the residual is the same either way."""
    from sparselmm.frame import independent_columns, residual

    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(500), rng.normal(size=(500, 3))])
    y = X @ [1.0, 2.0, -1.0, 0.5] + rng.normal(size=500)
    keep, basis = independent_columns(X)
    assert basis is None and keep.tolist() == [0, 1, 2, 3]
    exact = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(residual(y, X, None), exact, atol=1e-12)
    # a column independent by 1e-5 of its norm: kept (above 1e-7), through the QR
    near = np.column_stack([X, X[:, 1] + 1e-5 * rng.normal(size=500)])
    keep, basis = independent_columns(near)
    assert basis is not None and keep.tolist() == [0, 1, 2, 3, 4]
    # an exact copy: dropped
    keep, basis = independent_columns(np.column_stack([X, X[:, 2]]))
    assert keep.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(residual(y, X, basis), exact, atol=1e-12)


def test_fitted_exactly_from_normal_equations_and_residual():
    """The normal-equations shortcut and the residual agree about an exact fit, on either side of 1e-12 ‖y‖."""
    from sparselmm.frame import fitted_exactly, independent_columns

    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(400), rng.normal(size=(400, 2))])
    fit = X @ [3.0, 1.0, -2.0]
    noise = rng.normal(size=400)
    noise -= X @ np.linalg.lstsq(X, noise, rcond=None)[0]  # orthogonal to X: the residual itself
    noise /= np.linalg.norm(noise)
    _, basis = independent_columns(X)
    for scale, exact in [(1.0, False), (1e-6, False), (1e-10, False), (1e-15, True), (0.0, True)]:
        y = fit + scale * np.linalg.norm(fit) * noise
        assert fitted_exactly(y, X, basis) is exact, scale
        assert fitted_exactly(y, X, np.linalg.qr(X)[0]) is exact, scale  # the residual through a basis


@pytest.mark.parametrize("fixed, expr", [("x", "1 + x"), ("x", "0 + x"), ("x + z", "z + x"), ("x", "1"),
                                          ("x", "x + z"), ("x + f", "1 + f"), ("0 + f", "0 + f"),
                                          ("x + b", "b"), ("center(x)", "x"), ("0 + Intercept", "1"),
                                          ("Intercept", "0 + Intercept")])
def test_random_columns_taken_from_the_fixed_matrix_equal_their_own(fixed, expr):
    """A random term of the intercept and numeric columns takes them from the fixed-effects matrix:
    the same names, order and values as its own model matrix (categorical, boolean and transformed
    columns are built anew)."""
    import formulaic

    rng = np.random.default_rng(2)
    n = 120
    data = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "z": rng.integers(0, 5, n),
                         "Intercept": rng.normal(size=n),  # a column named as formulaic's intercept
                         "f": rng.choice(["a", "b", "c"], n), "b": rng.uniform(size=n) < 0.5,
                         "g": rng.integers(0, 12, n).astype(str)})
    frame = sparselmm.frame.model_frame(f"y ~ {fixed} + ({expr} | g)", data)
    own = formulaic.model_matrix(expr, data, output="numpy")
    term = frame.terms[0]
    assert term.columns == tuple(sparselmm.frame.r_name(c) for c in own.model_spec.column_names)
    np.testing.assert_array_equal(term.X, np.asarray(own, dtype=float))
    assert term.X.flags.c_contiguous
    if (fixed, expr) == ("x", "1 + x"):  # taken, not rebuilt
        assert np.shares_memory(term.X, frame.X)


def test_term_columns_must_match_its_names():
    """A term's model columns and names disagree: an error at construction, before any kernel reads the rows."""
    from sparselmm.design import ReTerm

    codes = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="model columns of shape"):
        ReTerm(group="g", columns=("(Intercept)", "x"), levels=pd.Index(["a", "b"]), codes=codes, X=np.ones((4, 1)))
    with pytest.raises(ValueError, match="model columns of shape"):
        ReTerm(group="g", columns=("(Intercept)",), levels=pd.Index(["a", "b"]), codes=codes, X=np.ones((3, 1)))

"""Bad input gets a clear error (or warning) naming the column, level or term, before any heavy work."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm.errors import DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning
from sparselmm.frame import model_frame

from .oracle import dense_objective
from .test_sparse_backend import random_data


@pytest.fixture
def df():
    return random_data(0)


def quiet_fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sparselmm.SingularFitWarning)
        return sparselmm.fit(formula, data, **kw)


# --- formulas ------------------------------------------------------------------

def test_unknown_column_is_named(df):
    with pytest.raises(DataError, match="'w'") as info:
        model_frame("y ~ x + w + (1|a)", df)
    assert info.value.column == "w"
    with pytest.raises(DataError, match="'slope'"):
        model_frame("y ~ x + (slope|a)", df)
    with pytest.raises(DataError, match="'g'"):
        model_frame("y ~ x + (1|a/g)", df)
    with pytest.raises(DataError, match="'resp'"):
        model_frame("resp ~ x + (1|a)", df)


def test_unbalanced_parentheses(df):
    with pytest.raises(FormulaError, match="unbalanced parentheses"):
        model_frame("y ~ x + (1|a", df)
    with pytest.raises(FormulaError, match="unbalanced parentheses"):
        model_frame("y ~ x + 1|a)", df)


def test_random_term_without_grouping_factor(df):
    with pytest.raises(FormulaError, match=r"nothing after the bar in random term '\(1\|\)'"):
        model_frame("y ~ x + (1|)", df)
    with pytest.raises(FormulaError, match="nothing before the bar"):
        model_frame("y ~ x + (|a)", df)


def test_no_random_term_points_to_least_squares(df):
    with pytest.raises(FormulaError, match="no random-effects term.*ordinary least squares"):
        sparselmm.fit("y ~ x", df)
    with pytest.raises(FormulaError, match="no random-effects term"):
        sparselmm.LinearMixedModel("y ~ x + (1)", df)


@pytest.mark.parametrize("formula, match", [
    ("y ~ x + (1|factor(a))", r"unsupported grouping factor in random term '\(1\|factor\(a\)\)'"),
    ("y ~ x + (1|a + b)", "unsupported grouping factor"),
    ("y ~ x + 1|a", "must be enclosed in parentheses"),
    ("y ~ x - offset(z) + (1|a)", r"cannot subtract the offset term 'offset\(z\)'"),
    ("y ~ x + offset(z, w) + (1|a)", r"offset\(\) takes one expression"),
    ("y ~ x + s(z, k=3) + (1|a)", r"unsupported function s\(\)"),
    ("y ~ x + (1|a) - (1|b)", "cannot subtract random-effects term"),
    ("y ~ x + (1|a) ~ z", "more than one '~'"),
    ("y ~ x + (0|a)", "no columns"),
])
def test_unsupported_syntax(df, formula, match):
    with pytest.raises(FormulaError, match=match):
        model_frame(formula, df)


@pytest.mark.parametrize("formula", ["y ~ 0 + (1|a)", "y ~ -1 + (1|a)", "y ~ (1|a) - 1",
                                     "y ~ 0 + (0 + x|a)", "y ~ 0 + (1 + x|a) + (1|b)"])
def test_model_without_fixed_effects_is_allowed(df, formula):
    """lme4 allows an empty fixed part: p = 0, no β, and REML is ML."""
    ml = sparselmm.LinearMixedModel(formula, df, reml=False)
    reml = sparselmm.LinearMixedModel(formula, df, reml=True)
    assert ml.frame.fe_names == [] and ml.frame.X.shape == (len(df), 0)
    theta = ml.theta0 * 0.7
    want = dense_objective(ml.layout.terms, ml.frame.X, ml.frame.y, ml.layout.T(theta), False)
    assert ml.objective(theta) == pytest.approx(want, rel=1e-10)
    assert reml.objective(theta) == pytest.approx(ml.objective(theta), rel=1e-12)
    result = quiet_fit(formula, df)
    assert len(result.fe_params) == 0 and np.isfinite(result.objective)


# --- the response --------------------------------------------------------------

def test_string_response_is_refused_before_encoding(df):
    with pytest.raises(DataError, match="response 'a' is not numeric") as info:
        model_frame("a ~ x + (1|b)", df)
    assert info.value.column == "a"
    one = df.assign(s="same")  # one distinct string: formulaic would make it one 0/1 column
    with pytest.raises(DataError, match="response 's' is not numeric"):
        model_frame("s ~ x + (1|a)", one)
    with pytest.raises(DataError, match="response 'cat' is not numeric"):
        model_frame("cat ~ x + (1|a)", df.assign(cat=pd.Categorical(df.c)))
    with pytest.raises(DataError, match="response 'obj' is not numeric"):
        model_frame("obj ~ x + (1|a)", df.assign(obj=df.a.astype(object)))
    # numbers stored as objects are numbers
    frame = model_frame("num ~ x + (1|a)", df.assign(num=df.y.astype(object)))
    np.testing.assert_array_equal(frame.y, df.y.to_numpy())


def test_boolean_response(df):
    with pytest.raises(DataError, match="response 'yb' is boolean"):
        model_frame("yb ~ x + (1|a)", df.assign(yb=df.y > 3))
    # an explicit conversion is a numeric response
    frame = model_frame("yb ~ x + (1|a)", df.assign(yb=(df.y > 3).astype(float)))
    assert set(frame.y) == {0.0, 1.0}


def test_constant_response(df):
    with pytest.raises(DataError, match="response 'k' is constant") as info:
        model_frame("k ~ x + (1|a)", df.assign(k=2.5))
    assert info.value.column == "k"
    with pytest.raises(DataError, match="response 'k' is constant"):
        model_frame("k ~ 0 + (1|a)", df.assign(k=0.0))


def test_response_fitted_exactly_by_fixed_effects(df):
    with pytest.raises(DataError, match="response 'lin' is fitted exactly by the fixed effects"):
        model_frame("lin ~ x + (1|a)", df.assign(lin=2 * df.x - 1))


def test_response_with_infinite_values(df):
    bad = df.copy()
    bad.loc[[4, 9], "y"] = [np.inf, -np.inf]
    with pytest.raises(DataError, match=r"response 'y' has 2 infinite value\(s\), at rows 4, 9"):
        sparselmm.fit("y ~ x + (1|a)", bad)
    with pytest.raises(DataError, match=r"response 'log\(y\)' has 1 infinite value\(s\), at row 7"):
        with np.errstate(divide="ignore"):
            model_frame("log(y) ~ x + (1|a)", df.assign(y=df.y.where(df.index != 7, 0.0)))


def test_infinite_covariate_is_named(df):
    bad = df.copy()
    bad.loc[3, "x"] = np.inf
    with pytest.raises(DataError, match=r"fixed-effect column 'x' has 1 infinite value\(s\), at row 3"):
        model_frame("y ~ x + (1|a)", bad)
    bad = df.copy()
    bad.loc[5, "z"] = -np.inf
    with pytest.raises(DataError, match="random term .*'z'"):
        model_frame("y ~ x + (0 + z|a)", bad)


# --- missing values --------------------------------------------------------------

def test_missing_values_dropped_with_count_or_raised(df):
    bad = df.copy()
    bad.loc[[1, 2], "y"] = np.nan
    bad.loc[2, "x"] = np.nan
    bad.loc[6, "b"] = None
    with pytest.warns(MissingDataWarning, match=r"dropped 3 of 60 rows.*'y' \(2\).*'x' \(1\).*'b' \(1\)"):
        frame = model_frame("y ~ x + (1|a) + (1|b)", bad, missing="drop")
    assert frame.n == 57 and 6 not in frame.row_index
    with pytest.raises(DataError, match="missing values in column"):
        model_frame("y ~ x + (1|a) + (1|b)", bad, missing="raise")
    with pytest.raises(ValueError, match="missing must be one of"):
        model_frame("y ~ x + (1|a)", bad, missing="keep")


def test_fit_drops_missing_rows_by_default_with_warning(df):
    bad = df.copy()
    bad.loc[10, "x"] = np.nan
    with pytest.warns(MissingDataWarning, match="dropped 1 of 60 rows"):
        result = quiet_fit("y ~ x + (1|a)", bad)
    assert result.nobs == 59
    want = quiet_fit("y ~ x + (1|a)", df.drop(index=10))
    assert result.objective == pytest.approx(want.objective, rel=1e-10)


def test_all_rows_missing(df):
    with pytest.warns(MissingDataWarning), pytest.raises(DataError, match="0 row"):
        model_frame("y ~ x + (1|a)", df.assign(x=np.nan))


# --- grouping factors ------------------------------------------------------------

def test_single_level_grouping_factor(df):
    with pytest.raises(DataError, match="grouping factor 'g' has a single level \\('only'\\).*> 1 sampled level") \
            as info:
        sparselmm.fit("y ~ x + (1|a) + (1|g)", df.assign(g="only"))
    assert info.value.column == "g" and info.value.level == "only"
    # an interaction with a single level after dropping missing rows
    sub = df.assign(g=np.where(df.index < 40, np.nan, 1.0))
    with pytest.warns(MissingDataWarning), pytest.raises(DataError, match="'g' has a single level"):
        model_frame("y ~ x + (1|a) + (1|g)", sub)


def test_as_many_levels_as_rows(df):
    with pytest.raises(DataError, match="grouping factor 'id' has 60 levels for 60 observations.*must be <") \
            as info:
        sparselmm.LinearMixedModel("y ~ x + (1|id)", df.assign(id=np.arange(len(df))))
    assert info.value.column == "id"
    with pytest.raises(DataError, match="'a:id'"):
        model_frame("y ~ x + (1|a) + (1|a:id)", df.assign(id=np.arange(len(df))))


def test_more_random_effects_than_rows_in_a_slope_term(df):
    """lme4's check.nobs.vs.nRE: 25 levels × 3 columns ≥ 60 rows."""
    wide = df.assign(g=np.arange(len(df)) % 25)
    with pytest.raises(DataError, match=r"number of random effects \(=75\) for term \(\(Intercept\) \+ x \+ z \| g\)"):
        model_frame("y ~ x + (1 + x + z|g)", wide)
    model_frame("y ~ x + (1|g)", wide)  # 25 intercepts: fine


def test_numeric_grouping_column_is_a_factor(df):
    num = df.assign(g=df.a.map({k: 10.0 * i for i, k in enumerate("ABCDEFG")}))
    frame = model_frame("y ~ x + (1|g)", num)
    assert list(frame.terms[0].levels) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    ref = sparselmm.LinearMixedModel("y ~ x + (1|a)", df)
    model = sparselmm.LinearMixedModel("y ~ x + (1|g)", num)
    assert model.objective([0.8]) == pytest.approx(ref.objective([0.8]), rel=1e-12)


def test_unused_categories_are_dropped(df):
    cat = df.assign(g=pd.Categorical(df.a, categories=list("ABCDEFGXYZ")))
    frame = model_frame("y ~ x + (1|g)", cat)
    assert list(frame.terms[0].levels) == list("ABCDEFG")
    assert frame.terms[0].nlevels == 7
    # a category used only by dropped rows is dropped too
    cat.loc[cat.g == "G", "x"] = np.nan
    with pytest.warns(MissingDataWarning):
        frame = model_frame("y ~ x + (1|g)", cat)
    assert list(frame.terms[0].levels) == list("ABCDEF")


@pytest.mark.parametrize("kind", ["str", "category", "float"])
def test_missing_level_is_a_missing_value(df, kind):
    g = df.a.map({k: float(i) for i, k in enumerate("ABCDEFG")}) if kind == "float" else df.a.astype(kind)
    g = g.where(~df.index.isin([0, 5]))  # NaN as a level
    data = df.assign(g=g)
    with pytest.warns(MissingDataWarning, match="dropped 2 of 60 rows with missing values in 'g'"):
        frame = model_frame("y ~ x + (1|g)", data)
    assert frame.n == 58 and frame.terms[0].nlevels == 7
    assert not any(pd.isna(frame.terms[0].levels))
    with pytest.raises(DataError, match="'g'"):
        model_frame("y ~ x + (1|g)", data, missing="raise")


# --- fixed effects ---------------------------------------------------------------

def test_rank_deficient_fixed_effects_drop_aliased_columns(df):
    data = df.assign(x2=2 * df.x, x3=df.x - df.z)
    with pytest.warns(RankDeficiencyWarning,
                      match=r"rank deficient so dropping 1 column / coefficient: 'x3'"):
        model = sparselmm.LinearMixedModel("y ~ x + z + x3 + (1|a)", data)
    assert model.frame.fe_names == ["(Intercept)", "x", "z"]
    with pytest.warns(RankDeficiencyWarning, match=r"dropping 2 columns / coefficients: 'x2', 'x3'"):
        model = sparselmm.LinearMixedModel("y ~ x + z + x2 + x3 + (1|a)", data)
    assert model.frame.fe_names == ["(Intercept)", "x", "z"] and model.frame.X.shape[1] == 3
    ref = sparselmm.LinearMixedModel("y ~ x + z + (1|a)", df)
    np.testing.assert_array_equal(model.frame.X, ref.frame.X)
    assert model.objective([0.6]) == pytest.approx(ref.objective([0.6]), rel=1e-12)
    # the fit goes on, and new data is encoded without the dropped columns
    with pytest.warns(RankDeficiencyWarning):
        result = quiet_fit("y ~ x + z + x2 + x3 + (1|a)", data)
    assert list(result.fe_params.index) == ["(Intercept)", "x", "z"]
    np.testing.assert_allclose(result.predict(data.iloc[:5]), result.fittedvalues.iloc[:5], rtol=1e-12)


def test_empty_interaction_cells_are_dropped(df):
    """c × d with a cell that never occurs: its all-zero column is aliased, as in lme4."""
    data = df.assign(d=np.where(df.c == "lo", "u", np.where(df.index % 2, "u", "v")))
    assert not ((data.c == "lo") & (data.d == "v")).any()
    with pytest.warns(RankDeficiencyWarning, match="'clo:dv'"):
        frame = model_frame("y ~ c * d + (1|a)", data)
    assert "clo:dv" not in frame.fe_names and len(frame.fe_names) == 5


def test_tiny_but_independent_columns_are_kept(df):
    """The rank check is relative to each column's norm: scale does not matter."""
    data = df.assign(big=df.x * 1e8, small=df.z * 1e-8)
    frame = model_frame("y ~ big + small + (1|a)", data)
    assert frame.fe_names == ["(Intercept)", "big", "small"]


def test_more_columns_than_rows(df):
    small = df.iloc[:12]
    with pytest.raises(DataError, match="13 columns but there are only 12 observations"):
        model_frame("y ~ a + x + (1|b)", small.assign(a=[f"l{i}" for i in range(12)], b=["p", "q"] * 6))


def test_no_residual_degrees_of_freedom(df):
    small = df.iloc[:6].assign(g=["p", "q"] * 3)
    with pytest.raises(DataError, match="6 linearly independent columns for 6 observations"):
        model_frame("y ~ 0 + f + (1|g)", small.assign(f=list("uvwxyz")))


def test_empty_data_and_one_row(df):
    with pytest.raises(DataError, match="no rows"):
        sparselmm.fit("y ~ x + (1|a)", df.iloc[:0])
    with pytest.raises(DataError, match="1 row"):
        sparselmm.fit("y ~ x + (1|a)", df.iloc[:1])
    with pytest.raises(DataError, match="pandas DataFrame"):
        model_frame("y ~ x + (1|a)", df.to_dict())


def test_checks_run_before_crossproducts(df, monkeypatch):
    """Every check is in the model frame: the crossproducts are never reached."""
    import sparselmm.crossprod

    def boom(*args, **kwargs):
        raise AssertionError("crossproducts reached")

    monkeypatch.setattr(sparselmm.crossprod, "crossproducts", boom)
    cases = [("y ~ x + (1|g)", df.assign(g=1)), ("k ~ x + (1|a)", df.assign(k=1.0)),
             ("y ~ x + (1|id)", df.assign(id=range(60))), ("a ~ x + (1|b)", df),
             ("y ~ x + (1|a)", df.iloc[:1])]
    for formula, data in cases:
        with pytest.raises(DataError):
            sparselmm.LinearMixedModel(formula, data)


# --- the caller's data is never modified -----------------------------------------------

def awkward_data() -> pd.DataFrame:
    df = random_data(9)
    df["cat"] = pd.Categorical(df.b, categories=[f"b{i}" for i in range(12)])  # unused categories
    df["num"] = df.a.map({k: i for i, k in enumerate("ABCDEFG")})
    df.loc[[2, 7], "x"] = np.nan
    df.loc[11, "cat"] = np.nan
    return df.set_index(pd.Index(np.arange(100, 160), name="row"))


@pytest.mark.parametrize("entry", ["fit", "LinearMixedModel", "MixedLM.from_formula"])
def test_caller_data_is_not_modified(entry):
    df = awkward_data()
    before = copy.deepcopy(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if entry == "fit":
            sparselmm.fit("y ~ x * c + (1 + x|num) + (1|cat)", df)
        elif entry == "LinearMixedModel":
            model = sparselmm.LinearMixedModel("y ~ x + c + (1|cat) + (1|num:c)", df, missing="drop")
            model.fit()
        else:
            sparselmm.MixedLM.from_formula("y ~ x + c", df, groups="cat", re_formula="1 + x",
                                           missing="drop").fit()
    pd.testing.assert_frame_equal(df, before)
    assert list(df.cat.cat.categories) == list(before.cat.cat.categories)


def test_mixedlm_arrays_are_not_modified():
    """statsmodels' array entry point: endog, exog, groups and exog_re come back unchanged."""
    rng = np.random.default_rng(3)
    n = 120
    endog = rng.normal(size=n)
    exog = np.column_stack([np.ones(n), rng.normal(size=n)])
    groups = rng.integers(0, 12, n)
    exog_re = np.column_stack([np.ones(n), exog[:, 1]])
    copies = [a.copy() for a in (endog, exog, groups, exog_re)]
    sparselmm.MixedLM(endog, exog, groups, exog_re=exog_re).fit()
    for before, after in zip(copies, (endog, exog, groups, exog_re)):
        np.testing.assert_array_equal(before, after)

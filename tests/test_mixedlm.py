"""sparselmm.MixedLM against statsmodels' MixedLM on the same data (statsmodels is a test extra)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm import MixedLM, MixedLMParams

sm_mixed = pytest.importorskip("statsmodels.regression.mixed_linear_model")
SmMixedLM = sm_mixed.MixedLM

from .conftest import DATA  # noqa: E402


def sleep() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})


def quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def compare(ours, theirs, rtol=2e-3, re_rtol=5e-3):
    """Our fit is as good (llf) and agrees in estimates, SEs and random effects."""
    assert ours.llf >= theirs.llf - 1e-6 * abs(theirs.llf)
    if isinstance(theirs.params, pd.Series):
        assert list(ours.params.index) == list(theirs.params.index)
    else:
        assert isinstance(ours.params, np.ndarray) and ours.params.shape == theirs.params.shape
    np.testing.assert_allclose(ours.fe_params, theirs.fe_params, rtol=rtol)
    np.testing.assert_allclose(ours.bse_fe, theirs.bse_fe, rtol=rtol)
    np.testing.assert_allclose(ours.scale, theirs.scale, rtol=rtol)
    np.testing.assert_allclose(np.asarray(ours.cov_re), np.asarray(theirs.cov_re), rtol=re_rtol,
                               atol=re_rtol * np.abs(np.asarray(theirs.cov_re)).max(initial=0))
    np.testing.assert_allclose(ours.vcomp, theirs.vcomp, rtol=re_rtol, atol=1e-6)
    for g, re in theirs.random_effects.items():
        np.testing.assert_allclose(ours.random_effects[g].to_numpy(), re.to_numpy(), rtol=re_rtol,
                                   atol=re_rtol * np.abs(re.to_numpy()).max())
        assert list(ours.random_effects[g].index) == list(re.index)
        assert type(ours.random_effects[g]) is type(re)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_random_slopes_formula(reml):
    df = sleep()
    kw = dict(groups="Subject", re_formula="1 + Days")
    ours = quiet(MixedLM.from_formula("Reaction ~ Days", df, **kw).fit, reml=reml)
    theirs = quiet(SmMixedLM.from_formula("Reaction ~ Days", df, **kw).fit, reml=reml)
    compare(ours, theirs)
    np.testing.assert_allclose(ours.bse, theirs.bse, rtol=5e-3)
    np.testing.assert_allclose(ours.bse_re, theirs.bse_re, rtol=5e-3)
    np.testing.assert_allclose(ours.fittedvalues, theirs.fittedvalues, rtol=1e-4)
    for g in ("308", "372"):
        np.testing.assert_allclose(ours.random_effects_cov[g], theirs.random_effects_cov[g], rtol=5e-3)
    assert ours.method == theirs.method and ours.k_re2 == 3 and ours.k_vc == 0
    assert np.isnan(ours.aic) == np.isnan(theirs.aic)
    if not reml:
        assert ours.aic == pytest.approx(theirs.aic, rel=1e-8) and ours.bic == pytest.approx(theirs.bic, rel=1e-8)


def test_numpy_input_random_intercept():
    rng = np.random.default_rng(0)
    n, m = 400, 40
    groups = rng.integers(0, m, n)
    x = rng.normal(size=(n, 2))
    y = 1 + x @ [0.5, -0.3] + rng.normal(size=m)[groups] * 0.8 + rng.normal(size=n)
    exog = np.column_stack([np.ones(n), x])
    ours = quiet(MixedLM(y, exog, groups).fit)
    theirs = quiet(SmMixedLM(y, exog, groups).fit)
    compare(ours, theirs)
    assert ours.model.param_names == theirs.model.data.param_names == ["const", "x1", "x2", "Group Var"]


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_variance_components_nested(reml):
    df = pd.read_csv(DATA / "pastes.csv")
    kw = dict(groups="batch", re_formula="1", vc_formula={"cask": "0 + C(cask)"})
    ours = quiet(MixedLM.from_formula("strength ~ 1", df, **kw).fit, reml=reml)
    theirs = quiet(SmMixedLM.from_formula("strength ~ 1", df, **kw).fit, reml=reml)
    compare(ours, theirs)
    assert ours.model._lmm.backend.name == "dense"
    # same model as lme4's (1|batch) + (1|batch:cask)
    lme4 = sparselmm.fit("strength ~ 1 + (1|batch) + (1|batch:cask)", df, reml=reml)
    assert ours.llf == pytest.approx(lme4.llf, abs=1e-6)


def test_crossed_through_single_group_is_one_sparse_group():
    df = pd.read_csv(DATA / "penicillin.csv")
    df["one"] = 1
    kw = dict(groups="one", vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"})
    model = MixedLM.from_formula("diameter ~ 1", df, **kw)
    ours = quiet(model.fit)
    assert model._lmm.backend.name == "blocked"  # crossed: not dense per group
    theirs = quiet(SmMixedLM.from_formula("diameter ~ 1", df, **kw).fit)
    compare(ours, theirs)
    np.testing.assert_allclose(ours.random_effects_cov[1], theirs.random_effects_cov[1], rtol=5e-3)
    lme4 = sparselmm.fit("diameter ~ 1 + (1|plate) + (1|sample)", df)
    assert ours.llf == pytest.approx(lme4.llf, abs=1e-6)


def test_free_holds_parameters_fixed():
    """free.cov_re = I fits uncorrelated random effects (statsmodels' documented use)."""
    df = sleep()
    kw = dict(groups="Subject", re_formula="1 + Days")
    free = MixedLMParams.from_components(np.ones(2), np.eye(2))
    ours = quiet(MixedLM.from_formula("Reaction ~ Days", df, **kw).fit, free=free)
    theirs = quiet(SmMixedLM.from_formula("Reaction ~ Days", df, **kw).fit, free=free, method=["lbfgs"])
    assert ours.cov_re.iloc[0, 1] == 0.0
    assert ours.llf >= theirs.llf - 1e-6 * abs(theirs.llf)
    np.testing.assert_allclose(np.diag(ours.cov_re), np.diag(theirs.cov_re), rtol=5e-3)
    diag = sparselmm.fit("Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", df)
    assert ours.llf == pytest.approx(diag.llf, abs=1e-6)


def test_missing_drop_and_raise():
    df = sleep()
    df.loc[[5, 17, 40], "Reaction"] = np.nan
    before = df.copy()
    kw = dict(groups="Subject", re_formula="1 + Days")
    ours = quiet(MixedLM.from_formula("Reaction ~ Days", df, missing="drop", **kw).fit)
    theirs = quiet(SmMixedLM.from_formula("Reaction ~ Days", df, missing="drop", **kw).fit)
    assert ours.nobs == theirs.nobs == 177
    compare(ours, theirs)
    for missing in ("raise", "none"):  # statsmodels' formulas refuse missing values under "none" too
        with pytest.raises(sparselmm.DataError, match="Reaction"):
            MixedLM.from_formula("Reaction ~ Days", df, missing=missing, **kw)
    with pytest.raises(sparselmm.DataError, match="missing='drop'"):
        MixedLM(df.Reaction, np.ones((len(df), 1)), df.Subject).fit()
    pd.testing.assert_frame_equal(df, before)


@pytest.mark.parametrize("use_sqrt", [True, False], ids=["sqrt", "user"])
@pytest.mark.parametrize("profile_fe", [True, False], ids=["profiled", "fixed-fe"])
def test_loglike_and_score_match_statsmodels(use_sqrt, profile_fe):
    df = sleep()
    kw = dict(groups="Subject", re_formula="1 + Days")
    ours = MixedLM.from_formula("Reaction ~ Days", df, use_sqrt=use_sqrt, **kw)
    theirs = _statsmodels_model("Reaction ~ Days", df, use_sqrt=use_sqrt, **kw)
    theirs.reml = ours.reml = True
    rng = np.random.default_rng(5)
    for _ in range(3):
        T = np.tril(rng.uniform(0.2, 1.5, (2, 2)))
        fe = np.array([250.0, 10.0]) + rng.normal(size=2)
        pa = MixedLMParams.from_components(fe, cov_re=T @ T.T)
        pb = sm_mixed.MixedLMParams.from_components(fe, cov_re=T @ T.T)
        assert ours.loglike(pa, profile_fe) == pytest.approx(theirs.loglike(pb, profile_fe), rel=1e-10)
        s_ours, s_theirs = ours.score(pa, profile_fe), theirs.score(pb, profile_fe)
        np.testing.assert_allclose(s_ours, s_theirs, rtol=1e-6, atol=1e-8 * np.abs(s_theirs).max())


@pytest.mark.parametrize("use_sqrt", [True, False], ids=["sqrt", "user"])
def test_score_against_finite_differences(use_sqrt):
    df = pd.read_csv(DATA / "pastes.csv")
    model = MixedLM.from_formula("strength ~ 1", df, groups="batch", re_formula="1",
                                 vc_formula={"cask": "0 + C(cask)"}, use_sqrt=use_sqrt)
    rng = np.random.default_rng(1)
    for _ in range(3):
        packed = rng.uniform(0.3, 2.0, 2)
        g = model.score(packed)
        h = 1e-5
        fd = [(model.loglike(packed + h * e) - model.loglike(packed - h * e)) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(g, fd, rtol=1e-5)


def _statsmodels_model(formula, df, **kw):
    model = SmMixedLM.from_formula(formula, df, **kw)
    model.cov_pen = model.fe_pen = model._freepat = None  # set by statsmodels' fit
    model._cov_sing = 0
    return model


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_hessian(reml):
    """Our Hessian is the second derivative of statsmodels' own log-likelihood.

    statsmodels' analytic Hessian agrees in its (Ψ, Ψ) block. Its (fe, fe) block
    omits the rank-one term 2ν S d d'S / qf² (d = β − β̂) and its (fe, Ψ) block a
    term of the same kind, both zero at β = β̂; away from the optimum the whole
    matrix is checked against second differences of statsmodels' loglike.
    """
    df = sleep()
    kw = dict(groups="Subject", re_formula="1 + Days")
    ours, theirs = MixedLM.from_formula("Reaction ~ Days", df, **kw), _statsmodels_model("Reaction ~ Days", df, **kw)
    ours.reml = theirs.reml = reml
    fe, cov = np.array([251.0, 10.5]), np.array([[0.9, 0.01], [0.01, 0.05]])
    h_ours = ours.hessian(MixedLMParams.from_components(fe, cov_re=cov))[0]
    h_theirs = theirs.hessian(sm_mixed.MixedLMParams.from_components(fe, cov_re=cov))[0]
    np.testing.assert_allclose(h_ours[:2, :2], h_theirs[:2, :2], rtol=1e-3)
    np.testing.assert_allclose(h_ours[2:, 2:], h_theirs[2:, 2:], rtol=1e-5)

    x0 = np.concatenate([fe, cov[np.tril_indices(2)]])

    def f(x):
        return theirs.loglike(sm_mixed.MixedLMParams.from_packed(x, 2, 2, use_sqrt=False, has_fe=True), False)

    k = len(x0)
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            hi, hj = 1e-4 * max(1, abs(x0[i])), 1e-4 * max(1, abs(x0[j]))
            ei, ej = np.eye(k)[i] * hi, np.eye(k)[j] * hj
            H[i, j] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) / (4 * hi * hj)
    np.testing.assert_allclose(h_ours, H, rtol=1e-4, atol=1e-6 * np.abs(H).max())


def test_t_test_conf_int_and_predict():
    df = sleep()
    res = quiet(MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days").fit)
    tt = res.t_test(np.eye(res.k_fe))  # statsmodels 0.15: contrasts of the fixed effects only
    np.testing.assert_allclose(tt.effect, res.fe_params)
    np.testing.assert_allclose(tt.sd, res.bse_fe)
    theirs = quiet(SmMixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days").fit)
    R = np.eye(len(res.params))[[1, 3]]  # a fixed effect and a variance together: statsmodels' full vector
    for test in ("f_test", "wald_test"):
        kw = {} if test == "f_test" else {"scalar": True}
        ours_t, theirs_t = getattr(res, test)(R, **kw), getattr(theirs, test)(R, **kw)
        np.testing.assert_allclose(float(np.squeeze(ours_t.statistic)), float(np.squeeze(theirs_t.statistic)),
                                   rtol=1e-3)
    ci = res.conf_int()
    np.testing.assert_allclose(ci[1] - ci[0], 2 * 1.959963984540054 * res.bse, rtol=1e-9)
    np.testing.assert_allclose(res.tvalues, res.params / res.bse)
    np.testing.assert_allclose(res.model.predict(res.params), res.model.exog @ res.fe_params)
    summary = res.summary()
    assert list(summary.tables[1].index) == list(theirs.summary().tables[1].index)
    assert "Subject x Days Cov" in str(summary)


def test_profile_re_peaks_at_estimate():
    df = sleep()
    res = quiet(MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days").fit)
    prof = res.profile_re(0, "re", num_low=2, dist_low=100.0, num_high=2, dist_high=100.0)
    assert prof.shape == (5, 2)
    assert prof[2, 0] == pytest.approx(res.cov_re.iloc[0, 0], rel=1e-6)
    assert prof[2, 1] == pytest.approx(res.llf, abs=1e-6)
    assert np.all(prof[[0, 1, 3, 4], 1] < res.llf)


def test_sqrt_score_with_negative_cholesky_diagonal():
    """Square-root parameters are free in sign (as in statsmodels): the score is theirs, not a re-signed factor's."""
    df = sleep()
    model = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days")
    packed = np.array([-0.9, 0.2, 0.3])  # T = [[-0.9, 0], [0.2, 0.3]]
    g = model.score(packed)
    h = 1e-6
    fd = [(model.loglike(packed + h * e) - model.loglike(packed - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-5)
    # statsmodels differentiates at the positive-diagonal factor of the same Ψ instead: T D with D = diag(-1, 1),
    # so its first column of the score has the opposite sign (and disagrees with its own loglike's differences).
    theirs = _statsmodels_model("Reaction ~ Days", df, groups="Subject", re_formula="1 + Days")
    theirs.reml = True
    np.testing.assert_allclose(g * np.array([-1, -1, 1]), theirs.score(packed), rtol=1e-6)


def test_import_sparselmm_does_not_import_statsmodels():
    import subprocess
    import sys

    code = "import sys, sparselmm; sys.exit('statsmodels' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    code = "import sys, sparselmm; sparselmm.MixedLM; sys.exit('statsmodels' not in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_crossed_vc_formula_matches_lme4_door():
    """One group, a variance component per factor: the lme4 door's crossed model, no dense matrices."""
    from sparselmm.datasets import simulate_crossed

    df = simulate_crossed(3000, seed=2).assign(one=1)
    vc = {g: f"0 + C({g})" for g in ("student", "item", "dept")}
    res = quiet(MixedLM.from_formula("y ~ x + treat", df, groups="one", re_formula="0", vc_formula=vc).fit)
    lme4 = sparselmm.fit("y ~ x + treat + (1|student) + (1|item) + (1|dept)", df)
    assert res.llf == pytest.approx(lme4.llf, abs=1e-7)
    np.testing.assert_allclose(np.sort(res.fe_params), np.sort(lme4.fe_params), rtol=1e-6)  # patsy orders terms otherwise
    np.testing.assert_allclose(np.sort(res.vcomp), np.sort(lme4.varcorr["vcov"].to_numpy()[:3]), rtol=1e-5)
    assert res.model._lmm.backend.name in ("blocked", "sparse")

"""Inference with multi-df fixed terms and interactions against lmerTest, pbkrtest and lme4
(tests/data/{machines,cake,sleepphase}_{reml,ml}.inference.json, tests/data/README_inference.md).

Largest deviations measured (our optimum against lme4 1.1-31's, whose θ is within 2e-7 relative;
the rest follows θ): β 4e-11, θ 2e-7, σ 3e-8 relative, objective 5e-13; coefficient tables (both
df methods) SE and t 8e-8, df 4e-7, p 1.4e-5 relative; type 3 (both df methods) and type 1 anova
and the 2-row contrasts Sum Sq / Mean Sq, F and DenDF 4e-7, p 2e-6 relative; ranova LRT 1e-11 and
drop1 LRT 1.5e-9 absolute; Wald intervals 3e-8 relative; profile intervals 2e-5 relative. The
tolerances are wider (1e-3 for df and F, 1e-6 for LRTs and Wald, 2e-3 for profiles).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sparselmm
from sparselmm.inference.anova import type3_contrasts

DATA = Path(__file__).parent / "data"
PREFIXES = ["machines", "cake", "sleepphase"]
DDF = [pytest.param("satterthwaite", "satterthwaite", id="satterthwaite"),
       pytest.param("kenward-roger", "kenward_roger", id="kenward-roger")]


def inference_ref(prefix: str, kind: str) -> dict:
    return json.loads((DATA / f"{prefix}_{kind}.inference.json").read_text())


_FITS: dict = {}


def fitted(prefix: str, kind: str):
    """(reference, our fit): each model fitted once per module, factor columns read as strings."""
    if (prefix, kind) not in _FITS:
        ref = inference_ref(prefix, kind)
        factors = [c for c, how in ref["columns"].items() if how == "factor"]
        data = pd.read_csv(DATA / ref["dataset"], dtype={c: str for c in factors})
        assert len(data) == ref["n"]
        _FITS[prefix, kind] = ref, sparselmm.fit(ref["formula"], data, reml=kind == "reml")
    return _FITS[prefix, kind]


def rel(a, b):
    return abs(a / b - 1)


def p_close(p, ref):
    """p-values agree: to 2e-3 relative, or, for tiny p (whose relative change is t² times that of t),
    on the log scale to 1e-3 relative."""
    return rel(p, ref) < 2e-3 or abs(np.log(p) / np.log(ref) - 1) < 1e-3


BOTH = [pytest.param(prefix, kind, id=f"{prefix}-{kind}") for prefix in PREFIXES for kind in ("reml", "ml")]


@pytest.mark.parametrize("prefix,kind", BOTH)
def test_fit(prefix, kind):
    ref, result = fitted(prefix, kind)
    assert list(result.fe_params.index) == list(ref["beta"])
    assert set(result.theta.index) == set(ref["theta"])
    for name, value in ref["beta"].items():
        assert rel(result.fe_params[name], value) < 1e-6
    for name, value in ref["theta"].items():
        assert rel(result.theta[name], value) < 1e-5
    assert rel(result.sigma, ref["sigma"]) < 1e-6
    assert result.objective == pytest.approx(ref["objective"], abs=1e-6)
    assert result.llf == pytest.approx(ref["loglik"], abs=1e-6)


@pytest.mark.parametrize("ddf,key", DDF)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_coef_table(prefix, ddf, key):
    """lmerTest's summary table with Satterthwaite or Kenward–Roger df (pbkrtest's adjusted SEs)."""
    ref, result = fitted(prefix, "reml")
    tab = result.coef_table(ddf=ddf)
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    assert list(tab.index) == list(ref[key])
    for name, row in ref[key].items():
        est, se, df, t, p = tab.loc[name]
        assert rel(est, row["estimate"]) < 1e-6
        assert rel(se, row["se"]) < 1e-4
        assert rel(df, row["df"]) < 1e-3
        assert rel(t, row["t"]) < 1e-4
        assert p_close(p, row["p"])
        # t and p as R computes them from the table's own estimate, SE and df
        assert t == pytest.approx(est / se, rel=1e-12)
        assert p == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-10)


def _check_anova(tab, ref_rows):
    assert list(tab.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    assert list(tab.index) == list(ref_rows)
    for term, row in ref_rows.items():
        ss, ms, num_df, den_df, F, p = tab.loc[term]
        assert num_df == row["num_df"]
        assert rel(den_df, row["den_df"]) < 1e-3
        assert rel(F, row["F"]) < 1e-3
        assert rel(ss, row["sum_sq"]) < 1e-3
        assert rel(ms, row["mean_sq"]) < 1e-3
        assert p_close(p, row["p"])
        assert ms == pytest.approx(ss / num_df, rel=1e-12)
        assert p == pytest.approx(stats.f.sf(F, num_df, den_df), rel=1e-10)


@pytest.mark.parametrize("ddf,key", [("satterthwaite", "anova_satterthwaite"), ("kenward-roger", "anova_kr")],
                         ids=["satterthwaite", "kenward-roger"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_anova_type3(prefix, ddf, key):
    ref, result = fitted(prefix, "reml")
    _check_anova(result.anova(type=3, ddf=ddf), ref[key])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_anova_type1(prefix):
    """lmerTest's sequential (type 1) anova with Satterthwaite df: for cake, recipe is tested before
    the interaction enters and has quite other df than in type 3 (42 against 254)."""
    ref, result = fitted(prefix, "reml")
    _check_anova(result.anova(type=1), ref["anova_type1_satterthwaite"])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_type3_hypotheses(prefix):
    """Our type 3 contrast rows span exactly the rows lmerTest tested, zapsmall-rounded as lmerTest's
    (cake's temp row has 0.3333333 for the interaction columns, not 1/3), and testing lmerTest's rows
    gives the anova's F and DenDF (the test does not depend on the basis of the rows)."""
    ref, result = fitted(prefix, "reml")
    ours = type3_contrasts(result.model)
    hyp = ref["anova_type3_hypotheses"]
    assert list(ours) == list(hyp)
    for ddf, key in (("satterthwaite", "anova_satterthwaite"), ("kenward-roger", "anova_kr")):
        tab = result.anova(type=3, ddf=ddf)
        for term, h in hyp.items():
            L = np.array(h["L"])
            assert ours[term].shape == L.shape
            coef = np.linalg.lstsq(ours[term].T, L.T, rcond=None)[0]
            assert np.abs(ours[term].T @ coef - L.T).max() < 1e-12
            test = result.contrast_test(L, ddf=ddf)
            F = test["t value"] ** 2 if L.shape[0] == 1 else test["F value"]
            den_df = test["df"] if L.shape[0] == 1 else test["DenDF"]
            assert F == pytest.approx(tab.loc[term, "F value"], rel=1e-9)
            assert den_df == pytest.approx(tab.loc[term, "DenDF"], rel=1e-9)
            assert rel(F, ref[key][term]["F"]) < 1e-3
    if prefix == "cake":
        assert np.array_equal(ours["temp"], [[0, 0, 0, 1, 0.3333333, 0.3333333]])


@pytest.mark.parametrize("ddf,key", DDF)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_contrast_test(prefix, ddf, key):
    """lmerTest's ``contest(m, L, joint = TRUE)`` for the reference's 2-row L (a data frame with the
    fixed effects' names as columns, given here in reverse order)."""
    ref, result = fitted(prefix, "reml")
    c = ref["contrast"]
    assert c["columns"] == list(result.fe_params.index)
    L = pd.DataFrame(c["L"], columns=c["columns"])
    assert np.allclose(L.to_numpy() @ result.fe_params.to_numpy(), c["estimate"], rtol=1e-6, atol=0)
    test = result.contrast_test(L[L.columns[::-1]], ddf=ddf)
    row = c[key]
    assert list(test.index) == ["Sum Sq", "Mean Sq", "F value", "NumDF", "DenDF", "Pr(>F)"]
    assert test["NumDF"] == row["num_df"] == 2
    assert rel(test["DenDF"], row["den_df"]) < 1e-3
    assert rel(test["F value"], row["F"]) < 1e-3
    assert p_close(test["Pr(>F)"], row["p"])
    assert test["Pr(>F)"] == pytest.approx(stats.f.sf(test["F value"], 2, test["DenDF"]), rel=1e-10)
    # lmerTest's Sum Sq and Mean Sq: F σ̂², for Kenward–Roger F before its scaling (pbkrtest's FtestU;
    # the scaling is 0.937 for machines, 0.993 for cake, 1 for sleepphase)
    assert rel(test["Mean Sq"], row["mean_sq"]) < 1e-3
    assert rel(test["Sum Sq"], row["sum_sq"]) < 1e-3


def test_kenward_roger_F_is_hotellings_exact_F():
    """Machines with an unstructured covariance of the three machine effects per worker: the design is
    balanced, so the Kenward–Roger F test of Machine is exact, Hotelling's T² of the workers' mean
    differences (B − A, C − A): F = (n − q)/(q(n − 1)) T² on (q, n − q) = (2, 4) df. pbkrtest gets
    there with df2 = 4 and the F scaling (n − q)/(n − 1) = 0.8 (it only skips the scaling at df2 = 2);
    lmerTest's Mean Sq is the unscaled T²/q times σ̂²."""
    data = pd.read_csv(DATA / "machines.csv", dtype={"Machine": str, "Worker": str})
    result = sparselmm.fit("score ~ Machine + (0 + Machine | Worker)", data)
    means = data.groupby(["Worker", "Machine"])["score"].mean().unstack()
    d = np.column_stack([means["B"] - means["A"], means["C"] - means["A"]])
    n, q = d.shape
    T2 = n * d.mean(0) @ np.linalg.solve(np.cov(d.T), d.mean(0))
    F = (n - q) / (q * (n - 1)) * T2
    row = result.anova(type=3, ddf="kenward-roger").loc["Machine"]
    assert row["NumDF"] == q
    assert row["DenDF"] == pytest.approx(n - q, rel=1e-8)
    assert rel(row["F value"], F) < 1e-5
    assert rel(row["Pr(>F)"], stats.f.sf(F, q, n - q)) < 1e-4
    assert rel(row["Mean Sq"], T2 / q * result.scale) < 1e-5
    test = result.contrast_test([[0, 1, 0], [0, 0, 1]], ddf="kenward-roger")
    assert test["F value"] == pytest.approx(row["F value"], rel=1e-12)


@pytest.mark.parametrize("prefix,kind", BOTH)
def test_ranova(prefix, kind):
    ref, result = fitted(prefix, kind)
    ref = ref["ranova"]
    tab = result.ranova()
    assert list(tab.index) == list(ref)
    for label, row in ref.items():
        assert tab.loc[label, "npar"] == row["npar"]
        assert abs(tab.loc[label, "logLik"] - row["logLik"]) < 1e-6
        if row["LRT"] is None:
            assert np.isnan(tab.loc[label, "LRT"])
            continue
        assert abs(tab.loc[label, "LRT"] - row["LRT"]) < 1e-6
        assert tab.loc[label, "Df"] == row["Df"]
        # dp/p = −h·dLRT, h the χ²₁ hazard (0.5 to 0.6 here): 1e-6 in LRT is ~6e-7 relative in p
        assert rel(tab.loc[label, "Pr(>Chisq)"], row["p"]) < 1e-6


@pytest.mark.parametrize("prefix", PREFIXES)
def test_drop1(prefix):
    """lme4's ``drop1(m, test = "Chisq")`` (terms not marginal to another: cake drops only recipe:temp),
    and the same test by ``sparselmm.anova`` of the fit and R's reduced formula."""
    ref, result = fitted(prefix, "ml")
    drop = ref["drop_fixed"]
    tab = result.drop1()
    assert list(tab.index) == ["<none>"] + list(drop)
    for term, row in drop.items():
        assert abs(tab.loc["<none>", "logLik"] - row["logLik_full"]) < 1e-6
        assert abs(tab.loc[term, "logLik"] - row["logLik_reduced"]) < 1e-6
        assert abs(tab.loc[term, "LRT"] - row["Chisq"]) < 1e-6
        assert tab.loc[term, "Df"] == row["Df"]
        assert rel(tab.loc[term, "Pr(>Chisq)"], row["p"]) < 1e-6
        reduced = sparselmm.fit(row["formula_reduced"], result.model.data, reml=False)
        an = sparselmm.anova(result, reduced, names=["full", "reduced"])
        assert list(an.index) == ["reduced", "full"]
        assert abs(an.loc["reduced", "logLik"] - row["logLik_reduced"]) < 1e-6
        assert abs(an.loc["full", "Chisq"] - row["Chisq"]) < 1e-6
        assert an.loc["full", "Df"] == row["Df"]


@pytest.mark.parametrize("prefix,kind", BOTH)
@pytest.mark.parametrize("method,tol", [("wald", 1e-6), ("profile", 2e-3)])
def test_intervals(prefix, kind, method, tol):
    """Wald within 1e-6, profile within 2e-3 relative (lme4 interpolates its profile with splines)."""
    ref, result = fitted(prefix, kind)
    ci = result.confint(method=method, level=ref["level"])
    assert list(ci.index) == list(ref[method])
    for name, row in ref[method].items():
        assert rel(ci.loc[name].iloc[0], row["lower"]) < tol
        assert rel(ci.loc[name].iloc[1], row["upper"]) < tol

"""Prior weights and offsets, equal to ``lmer(..., weights = w, offset = o)``.

References: tests/data/study (scripts/make_study_references.R), lme4 converged to BOBYQA's
rhoend = 1e-12 on four data sets, nested and crossed, REML and ML: the criterion to 1e-8, β to 1e-5,
standard errors to 1e-4, and every inference after the fit (Satterthwaite, Kenward–Roger on the
weighted covariance, ranova, profile intervals).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm import DataError

from .study import FITS, data_of, study_fit

IDS = [f"{n}-{k}" for n, k in FITS]


@pytest.fixture(params=FITS, ids=IDS)
def weighted(request):
    return study_fit(*request.param)


def _values(d: dict) -> np.ndarray:
    return np.array(list(d.values()), dtype=float)


def test_criterion_and_estimates(weighted):
    ref, _, fit = weighted
    assert fit.converged
    assert fit.objective == pytest.approx(ref["objective"], rel=1e-8)
    assert list(fit.fe_params.index) == list(ref["beta"])
    se = _values(ref["beta_se"])
    np.testing.assert_allclose(fit.fe_params, _values(ref["beta"]), rtol=1e-5, atol=1e-5 * se.min())
    np.testing.assert_allclose(fit.bse_fe, se, rtol=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert fit.nobs == ref["n"]


def test_objective_at_lme4s_theta(weighted):
    """The criterion as a function of θ is lme4's (with −Σ log w) to 1e-10 at its θ."""
    ref, _, fit = weighted
    theta = _values(ref["theta"])
    assert list(fit.theta.index) == list(ref["theta"])
    assert fit.model.objective(theta) == pytest.approx(ref["objective"], rel=1e-10)


def test_fitted_residuals_and_random_effects(weighted):
    ref, data, fit = weighted
    np.testing.assert_allclose(fit.fittedvalues.to_numpy()[:10], ref["fitted"], rtol=1e-5)
    scale = np.abs(ref["resid"]).max()
    np.testing.assert_allclose(fit.resid.to_numpy()[:10], ref["resid"], atol=1e-5 * scale)
    np.testing.assert_allclose(fit.residuals("pearson").to_numpy()[:10], ref["resid_pearson"], atol=1e-5 * scale)
    np.testing.assert_allclose(fit.scaled_residual_quantiles, ref["scaled_residuals"], atol=1e-4)
    for group, r in ref["ranef"].items():
        ours, sd = fit.random_effects[group], fit.random_effects_sd[group]
        for j, col in enumerate(ours.columns):
            vals = np.asarray(r["values"][j])
            scale = max(np.abs(vals).max(), np.max(r["sd"][j]), 1e-8)  # modes all zero at a zero variance
            np.testing.assert_allclose(ours.loc[r["levels"], col], vals, rtol=0, atol=1e-4 * scale)
            np.testing.assert_allclose(sd.loc[r["levels"], col], r["sd"][j], rtol=1e-4, atol=1e-8 * fit.sigma)


def test_predictions_include_the_offset(weighted):
    """predict(newdata) as lme4's (allow.new.levels): offset() terms evaluated on the new rows. An
    offset given as ``offset=`` is read from the new rows too, which lme4 1.1-31 does not do (its
    predictions of the fitted rows then differ from fitted() by the offset): ours are lme4's plus it."""
    ref, data, fit = weighted
    new = data.iloc[ref["predict_rows"]]
    expected = np.asarray(ref["predict"]) + (new[ref["offset"]].to_numpy() if ref["offset"] else 0.0)
    np.testing.assert_allclose(fit.predict(new).to_numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(fit.predict(data.iloc[:4]), fit.fittedvalues.iloc[:4], rtol=1e-12)


def test_satterthwaite(weighted):
    ref, _, fit = weighted
    table = fit.coef_table("satterthwaite")
    for name, row in ref["satterthwaite"].items():
        assert table.loc[name, "Std. Error"] == pytest.approx(row["se"], rel=1e-4)
        assert table.loc[name, "df"] == pytest.approx(row["df"], rel=1e-3)
        assert table.loc[name, "Pr(>|t|)"] == pytest.approx(row["p"], rel=1e-3)


def test_kenward_roger_on_the_weighted_covariance(weighted):
    """pbkrtest's algorithm with the residual covariance σ²W⁻¹ (pbkrtest itself ignores prior weights:
    its own numbers, kept as ``kenward_roger_pbkrtest``, differ)."""
    ref, _, fit = weighted
    if not fit.reml:
        pytest.skip("Kenward–Roger: REML fits")
    table = fit.coef_table("kenward-roger")
    for name, row in ref["kenward_roger"].items():
        assert table.loc[name, "Std. Error"] == pytest.approx(row["se"], rel=1e-4)
        assert table.loc[name, "df"] == pytest.approx(row["df"], rel=1e-3)
        assert table.loc[name, "Pr(>|t|)"] == pytest.approx(row["p"], rel=1e-3)
    unweighted = ref["kenward_roger_pbkrtest"]
    assert any(abs(table.loc[n, "df"] / r["df"] - 1) > 1e-3 or abs(table.loc[n, "Std. Error"] / r["se"] - 1) > 1e-4
               for n, r in unweighted.items())


def test_ranova_with_weights_and_offsets(weighted):
    ref, _, fit = weighted
    table = fit.ranova()
    rows = ref["ranova"]["rows"]
    assert list(table.index) == list(rows)
    for label, row in rows.items():
        assert table.loc[label, "logLik"] == pytest.approx(row["logLik"], abs=1e-6 * abs(row["logLik"]))
        assert table.loc[label, "npar"] == row["npar"]
        if row["LRT"] is not None:
            assert table.loc[label, "LRT"] == pytest.approx(row["LRT"], abs=1e-4)


@pytest.mark.parametrize("name", ["sleepstudy_w", "penicillin_w"])
def test_profile_intervals(name):
    """Variance parameters: lme4's ends, which interpolate a spline through its profile (ours are the
    roots), within 1e-3 (1.4e-4 seen). Fixed effects: lme4's profile of a weighted fit is wrong (its
    intervals a fifth of the Wald ones); the reference is the brute-force root of ζ over refits with
    β_j in the offset (uniroot to 1e-10)."""
    ref, _, fit = study_fit(name, "ml")
    ci = fit.confint(method="profile")
    fixed = ref["profile_fixed"]
    for parm, row in ref["profile"].items():
        if parm in fixed:
            continue
        assert ci.loc[parm].to_numpy() == pytest.approx([row["lower"], row["upper"]], rel=1e-3)
    for parm, row in fixed.items():
        assert ci.loc[parm].to_numpy() == pytest.approx([row["lower"], row["upper"]], rel=1e-7)
        wald = fit.confint(method="wald").loc[parm].to_numpy()
        assert ci.loc[parm].to_numpy() == pytest.approx(wald, rel=0.05)  # nearly quadratic in β


def test_backends_agree_with_weights():
    """Blocked, sparse and dense give the same weighted criterion and gradient to 1e-10."""
    for name, kinds in (("sleepstudy_w", ("dense", "sparse", "blocked")), ("penicillin_w", ("blocked", "sparse"))):
        ref, data, _ = study_fit(name, "reml")
        theta = np.array(list(ref["theta"].values())) * 1.1
        out = []
        for backend in kinds:
            m = sparselmm.LinearMixedModel(ref["formula"], data, weights=ref["weights"], offset=ref["offset"],
                                           backend=backend)
            out.append((m.objective(theta), m.backend.gradient(theta), m.backend.solution(theta).beta))
        f0, g0, b0 = out[0]
        for f1, g1, b1 in out[1:]:
            assert f0 == pytest.approx(f1, rel=1e-10)
            np.testing.assert_allclose(g0, g1, rtol=0, atol=1e-10 * max(1.0, np.abs(g0).max()))
            np.testing.assert_allclose(b0, b1, rtol=1e-10)


def test_parquet_pieces_with_a_weights_column(tmp_path):
    """A Parquet source with a weights column (and an offset column) is the in-memory fit to 1e-10."""
    ref, data, fit = study_fit("exam_w", "reml")
    for i, start in enumerate(range(0, len(data), 1000)):
        data.iloc[start:start + 1000].to_parquet(tmp_path / f"part-{i}.parquet")
    streamed = sparselmm.fit(ref["formula"], str(tmp_path / "part-*.parquet"), weights="w")
    assert streamed.objective == pytest.approx(fit.objective, rel=1e-10)
    np.testing.assert_allclose(streamed.fe_params, fit.fe_params, rtol=1e-8)
    ref, data, fit = study_fit("penicillin_w", "ml")
    data.to_parquet(tmp_path / "pen.parquet")
    streamed = sparselmm.fit(ref["formula"], [data.iloc[:50], data.iloc[50:]], reml=False, weights="w", offset="o")
    assert streamed.objective == pytest.approx(fit.objective, rel=1e-10)
    fitted = pd.concat([p for _, p in streamed.fitted_pieces()])
    np.testing.assert_allclose(fitted["fitted"], fit.fittedvalues, rtol=1e-8)
    assert streamed.scaled_residual_quantiles.to_numpy() == pytest.approx(fit.scaled_residual_quantiles, abs=1e-8)


def test_dask_source_with_weights_and_offset():
    """A Dask DataFrame's partitions with weights and offset columns: the in-memory fit to 1e-10."""
    dd = pytest.importorskip("dask.dataframe")
    ref, data, fit = study_fit("penicillin_w", "reml")
    streamed = sparselmm.fit(ref["formula"], dd.from_pandas(data, npartitions=3), weights="w", offset="o")
    assert streamed.objective == pytest.approx(fit.objective, rel=1e-10)
    np.testing.assert_allclose(streamed.fittedvalues.compute().to_numpy(), fit.fittedvalues, rtol=1e-8)


def test_weights_as_values_and_offset_terms_add_up():
    """Weights given as an array are the column's fit; offset(o) in the formula and offset='o' agree,
    and two offsets add up."""
    ref, data, fit = study_fit("penicillin_w", "reml")
    by_values = sparselmm.fit(ref["formula"], data, weights=data["w"].to_numpy(), offset=data["o"].to_numpy())
    assert by_values.objective == pytest.approx(fit.objective, rel=1e-12)
    in_formula = sparselmm.fit("diameter ~ 1 + offset(o) + (1 | plate) + (1 | sample)", data, weights="w")
    assert in_formula.objective == pytest.approx(fit.objective, rel=1e-12)
    half = data.assign(h=data["o"] / 2)
    two = sparselmm.fit("diameter ~ 1 + offset(h) + offset(h) + (1 | plate) + (1 | sample)", half, weights="w")
    assert two.objective == pytest.approx(fit.objective, rel=1e-12)
    np.testing.assert_allclose(two.fittedvalues, fit.fittedvalues, rtol=1e-10)


def test_unit_weights_are_the_unweighted_fit():
    ref, data, _ = study_fit("sleepstudy_w", "reml")
    a = sparselmm.fit("Reaction ~ Days + (Days | Subject)", data)
    b = sparselmm.fit("Reaction ~ Days + (Days | Subject)", data, weights=np.ones(len(data)))
    assert a.objective == pytest.approx(b.objective, rel=1e-13)


def test_simulated_residuals_have_variance_sigma2_over_w():
    """simulate(): ε_i ~ N(0, σ²/w_i), as lme4's simulate of a weighted fit."""
    _, data, fit = study_fit("exam_w", "ml")
    y = fit.simulate(200, seed=3)
    mean = y.mean(axis=1)
    w = data["w"].to_numpy()
    # per row, the variance across replicates is σ²/w plus the random effects' (the same for all rows of
    # a school and a standLRT); regress it on 1/w: the slope is σ²
    v = y.var(axis=1, ddof=1)
    slope = np.polyfit(1 / w, v, 1)[0]
    assert slope == pytest.approx(fit.scale, rel=0.1)
    assert np.all(np.isfinite(mean))


def test_bootstrap_of_a_weighted_fit_recovers_it():
    """Refits of responses simulated with σ²/w: the mean of σ* near σ̂ and of β* near β̂ (Monte-Carlo)."""
    _, _, fit = study_fit("sleepstudy_w", "ml")
    boot = fit.bootstrap(n=60, seed=1)
    assert boot.replicates["sigma"].mean() == pytest.approx(fit.sigma, rel=0.05)
    se = boot.replicates["Days"].std()
    assert abs(boot.replicates["Days"].mean() - fit.fe_params["Days"]) < 4 * se / np.sqrt(60)
    assert se == pytest.approx(fit.bse_fe["Days"], rel=0.35)


@pytest.mark.parametrize("value, kind", [(0.0, "zero"), (-1.0, "negative"), (np.nan, "missing"),
                                         (np.inf, "infinite")])
def test_bad_weights_are_refused_by_name(value, kind):
    data = data_of("sleepstudy_w")
    before = data.copy()
    data.loc[3, "w"] = value
    snapshot = data.copy()
    with pytest.raises(DataError, match=rf"the weights 'w' have 1 value\(s\) .*\({kind} at row 3\)"):
        sparselmm.fit("Reaction ~ Days + (Days | Subject)", data, weights="w")
    pd.testing.assert_frame_equal(data, snapshot)  # not modified
    assert not before.equals(data)


def test_bad_weights_and_offsets_name_the_problem():
    data = data_of("sleepstudy_w")
    with pytest.raises(DataError, match="the weights column 'nope' is not in the data"):
        sparselmm.fit("Reaction ~ Days + (1 | Subject)", data, weights="nope")
    with pytest.raises(DataError, match="the weights column 'g3' is not numeric"):
        sparselmm.fit("Reaction ~ Days + (1 | Subject)", data, weights="g3")
    with pytest.raises(DataError, match="weights has 3 values for 180 rows"):
        sparselmm.fit("Reaction ~ Days + (1 | Subject)", data, weights=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"offset\(g3\) is not one numeric value per row"):
        sparselmm.fit("Reaction ~ Days + offset(g3) + (1 | Subject)", data)
    bad = data.assign(o=np.where(data.index == 5, np.inf, data["o"]))
    with pytest.raises(DataError, match=r"offset column 'o' has 1 infinite value\(s\), at row 5"):
        sparselmm.fit("Reaction ~ Days + (1 | Subject)", bad, offset="o")
    with pytest.raises(DataError, match="name a column"):
        sparselmm.fit("Reaction ~ Days + (1 | Subject)", [data], weights=data["w"].to_numpy())


def test_missing_offsets_drop_rows_as_lme4():
    data = data_of("sleepstudy_w")
    data.loc[[2, 7], "o"] = np.nan
    with pytest.warns(sparselmm.MissingDataWarning, match=r"dropped 2 of 180 rows .*'o' \(2\)"):
        fit = sparselmm.fit("Reaction ~ Days + (1 | Subject)", data, offset="o")
    assert fit.nobs == 178


def test_predict_with_an_offset_given_as_values():
    ref, data, _ = study_fit("penicillin_w", "reml")
    fit = sparselmm.fit(ref["formula"], data, weights="w", offset=data["o"].to_numpy())
    new = data.iloc[:5]
    with pytest.raises(DataError, match=r"give the offset of the new rows as predict\(newdata, offset=...\)"):
        fit.predict(new)
    np.testing.assert_allclose(fit.predict(new, offset=new["o"].to_numpy()), fit.fittedvalues.iloc[:5], rtol=1e-12)


def test_command_line_weights(tmp_path, capsys):
    from sparselmm.cli import main

    ref, data, fit = study_fit("penicillin_w", "reml")
    path = tmp_path / "pen.csv"
    data.to_csv(path, index=False)
    assert main(["fit", str(path), ref["formula"], "--weights", "w", "--offset", "o", "--factor", "plate",
                 "--factor", "sample", "--quiet", "--json", "--ddf", "none"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["fit"]["objective"] == pytest.approx(fit.objective, rel=1e-10)


def test_weighted_insteval_matches_lme4():
    """The benchmark's weighted InstEval fit (ML): lme4's criterion, β and SEs."""
    from sparselmm.datasets import load_insteval

    from .study import insteval_weights, load_json

    ref = load_json("insteval_w_ml")
    data = load_insteval()
    fit = sparselmm.fit(ref["formula"], data, reml=False, weights=insteval_weights(len(data)))
    assert fit.objective <= ref["objective"] + 1e-8 * abs(ref["objective"])
    assert fit.objective == pytest.approx(ref["objective"], rel=1e-8)
    np.testing.assert_allclose(fit.fe_params, _values(ref["beta"]), rtol=1e-5)
    np.testing.assert_allclose(fit.bse_fe, _values(ref["beta_se"]), rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit.converged


def test_weights_as_values_follow_the_rows_kept():
    """Weights given as values for every row of the data: rows dropped for missing values drop their
    weight too (the fit equals that of the complete rows with theirs)."""
    data = data_of("sleepstudy_w")
    data.loc[[4, 50, 51], "Reaction"] = np.nan
    w = data["w"].to_numpy()
    with pytest.warns(sparselmm.MissingDataWarning):
        fit = sparselmm.fit("Reaction ~ Days + (Days | Subject)", data, weights=w)
    kept = data.dropna(subset=["Reaction"])
    ref = sparselmm.fit("Reaction ~ Days + (Days | Subject)", kept, weights="w")
    assert fit.nobs == 177
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
    np.testing.assert_allclose(fit.residuals("pearson"), ref.residuals("pearson"), rtol=1e-9, atol=1e-9)

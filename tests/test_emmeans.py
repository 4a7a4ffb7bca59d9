"""Estimated marginal means and contrasts, equal to R's emmeans 1.8 on lmer fits.

References: tests/data/study/emmeans_*.json (scripts/make_study_references.R): the means (emmean, SE,
df, confidence limits) and, for each, pairwise comparisons adjusted by Tukey, Holm, Bonferroni,
Šidák, Scheffé and none, reversed pairs, treatment against control (dunnettx), effects (fdr),
with Kenward–Roger and Satterthwaite df. Estimates and limits to 1e-5, df and p to 1e-3.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm.inference.distributions import ptukey, qtukey

from .study import STUDY, data_of, load_json

CASES = {  # name: data set
    "machines_reml": "machines", "machines_ml": "machines", "cake_by": "cake_f", "cake_averaged": "cake_f",
    "oats": "oats", "oats_at": "oats", "exam_w": "exam_w", "sleepstudy_offset": "sleepstudy_w",
    "sleepstudy_offset_arg": "sleepstudy_w", "cake_missing_cell": "cake_f",
}
#: (reference key, method, adjust, confidence limits)
CONTRASTS = [
    ("pairs_tukey", "pairwise", "tukey", True), ("pairs_holm", "pairwise", "holm", True),
    ("pairs_bonferroni", "pairwise", "bonferroni", False), ("pairs_none", "pairwise", "none", False),
    ("revpairwise", "revpairwise", None, False), ("trt_vs_ctrl", "trt.vs.ctrl", None, True),
    ("eff", "eff", None, False), ("sidak", "pairwise", "sidak", True), ("scheffe", "pairwise", "scheffe", True),
]
_FITS: dict = {}


def _fit(name: str):
    if name not in _FITS:
        ref = load_json(f"emmeans_{name}")
        data = data_of(CASES[name])
        if name == "cake_missing_cell":
            data = data[~((data["recipe"] == "C") & (data["temperature"] == "t175"))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (sparselmm.SingularFitWarning, sparselmm.RankDeficiencyWarning))
            fit = sparselmm.fit(ref["formula"], data, reml=ref["reml"], weights=ref["weights"], offset=ref["offset"])
        _FITS[name] = (ref, fit)
    return _FITS[name]


def _modes(name: str):
    """The df methods whose emmeans output is the model's: with prior weights, emmeans' Kenward–Roger
    is pbkrtest's, which ignores them (checked against the weighted reference instead)."""
    ref = load_json(f"emmeans_{name}")
    return [m for m in ref["modes"] if not (m == "kenward-roger" and ref["weights"])]


PARAMS = [(n, m) for n in CASES for m in _modes(n)]


def _close(ours, theirs, rel, scale=None):
    theirs = np.array([np.nan if v is None else v for v in theirs], dtype=float)
    ours = np.asarray(ours, dtype=float)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(theirs)
    atol = 0.0 if scale is None else rel * np.asarray(scale, dtype=float)[ok]
    err = np.abs(ours[ok] - theirs[ok])
    assert np.all(err <= rel * np.abs(theirs[ok]) + atol), f"ours {ours[ok]}\ntheirs {theirs[ok]}"


def _cells_equal(table: pd.DataFrame, names, values):
    for v, vals in zip(names, values):
        col = table[v]
        if pd.api.types.is_numeric_dtype(col.dtype):
            np.testing.assert_allclose(col.to_numpy(dtype=float), np.array(vals, dtype=float))
        else:
            assert list(col.astype(str)) == list(vals), v


@pytest.mark.parametrize("name, mode", PARAMS, ids=[f"{n}-{m}" for n, m in PARAMS])
def test_means(name, mode):
    ref, fit = _fit(name)
    want = ref["modes"][mode]["emmeans"]
    table = fit.emmeans(ref["specs"], by=ref["by"], at=ref["at"], ddf=mode)
    _cells_equal(table, want["variables"], want["cells"])
    _close(table["emmean"], want["emmean"], 1e-5, want["SE"])
    _close(table["SE"], want["SE"], 1e-5)
    _close(table["df"], want["df"], 1e-3)
    lo, hi = table.columns[-2:]
    _close(table[lo], want["lower"], 1e-5, want["SE"])
    _close(table[hi], want["upper"], 1e-5, want["SE"])


@pytest.mark.parametrize("name, mode", [p for p in PARAMS if "contrasts" in load_json(f"emmeans_{p[0]}")["modes"][p[1]]
                                        or "pairs_tukey" in load_json(f"emmeans_{p[0]}")["modes"][p[1]]],
                         ids=lambda v: str(v))
def test_contrasts(name, mode):
    ref, fit = _fit(name)
    got = ref["modes"][mode]
    for key, method, adjust, confint in CONTRASTS:
        want = got[key]
        table = fit.contrast(ref["specs"], method, by=ref["by"], at=ref["at"], adjust=adjust, ddf=mode,
                             confint=confint)
        assert list(table["contrast"]) == list(want["contrast"]), key
        _cells_equal(table, want["by_variables"], want["by"])
        _close(table["estimate"], want["estimate"], 1e-5, want["SE"])
        _close(table["SE"], want["SE"], 1e-5)
        _close(table["df"], want["df"], 1e-3)
        ratio = "t.ratio" if "t.ratio" in table else "z.ratio"
        _close(table[ratio], want["t"], 1e-5, np.ones(len(want["t"])))
        p = np.array(want["p"], dtype=float)
        np.testing.assert_allclose(table["p.value"], p, rtol=1e-3, atol=1e-10, err_msg=key)
        if confint:
            lo, hi = ("lower.CL", "upper.CL") if "lower.CL" in table else ("asymp.LCL", "asymp.UCL")
            _close(table[lo], want["lower"], 1e-5, want["SE"])
            _close(table[hi], want["upper"], 1e-5, want["SE"])


def test_kenward_roger_of_a_weighted_fit():
    """Means of a weighted fit with Kenward–Roger on σ²W⁻¹: pbkrtest's algorithm on the weighted
    covariance (emmeans' own KR is pbkrtest's, which ignores prior weights: different SEs and df)."""
    ref, fit = _fit("exam_w")
    want = ref["kenward_roger_weighted"]
    table = fit.emmeans(ref["specs"], by=ref["by"], ddf="kenward-roger")
    _close(table["emmean"], want["emmean"], 1e-5, want["SE"])
    _close(table["SE"], want["SE"], 1e-5)
    _close(table["df"], want["df"], 1e-3)
    pbkrtest = ref["modes"]["kenward-roger"]["emmeans"]
    assert np.max(np.abs(table["SE"] / np.array(pbkrtest["SE"]) - 1)) > 1e-3


def test_notes_and_labels():
    ref, fit = _fit("cake_averaged")
    table = fit.pairs("recipe")
    assert list(table["contrast"]) == ["A - B", "A - C", "B - C"]
    assert table.attrs["notes"] == ["Results are averaged over the levels of: temperature",
                                    "Degrees-of-freedom method: kenward-roger",
                                    "P value adjustment: tukey method for comparing a family of 3 estimates"]
    _, fit = _fit("oats")
    labels = list(fit.pairs("Variety")["contrast"])
    assert labels == ["Golden Rain - Marvellous", "Golden Rain - Victory", "Marvellous - Victory"]
    custom = fit.contrast("Variety", {"GR vs rest": [1, -0.5, -0.5]})
    assert list(custom["contrast"]) == ["GR vs rest"]
    means = fit.emmeans("Variety")
    assert custom["estimate"].iloc[0] == pytest.approx(means["emmean"].iloc[0] - means["emmean"].iloc[1:].mean())


def test_specs_forms_agree():
    _, fit = _fit("cake_by")
    a = fit.emmeans("recipe", by="temperature")
    b = fit.emmeans("~ recipe | temperature")
    c = fit.emmeans(["recipe"], by=["temperature"])
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    both = fit.emmeans("~ recipe * temperature")
    np.testing.assert_allclose(both["emmean"], a["emmean"])


def test_bad_specs_are_refused():
    _, fit = _fit("oats")
    with pytest.raises(ValueError, match="'nitrogen' is not a variable of the fixed effects"):
        fit.emmeans("nitrogen")
    with pytest.raises(ValueError, match="at= gives 'Variety' the value 'Oat', which is not one of its levels"):
        fit.emmeans("Variety", at={"Variety": ["Oat"]})
    with pytest.raises(ValueError, match="adjust must be one of"):
        fit.pairs("Variety", adjust="mvt")
    with pytest.raises(ValueError, match="contrast 'x' has 2 coefficients for 3 means"):
        fit.contrast("Variety", {"x": [1, -1]})
    with pytest.raises(ValueError, match="ddf must be"):
        fit.emmeans("Variety", ddf="containment")


def test_insteval_service_against_emmeans():
    """InstEval's service (73,421 rows): emmeans' Satterthwaite means; ours with Kenward–Roger too, and
    after the fit in well under a second here (emmeans + pairs; KR's dense A⁻¹ of order 4,114)."""
    from sparselmm.datasets import load_insteval

    ref = load_json("emmeans_insteval")
    fit = sparselmm.fit(ref["formula"], load_insteval())
    want = ref["modes"]["satterthwaite"]["emmeans"]
    table = fit.emmeans("service", ddf="satterthwaite")
    _close(table["emmean"], want["emmean"], 1e-5, want["SE"])
    _close(table["SE"], want["SE"], 1e-4)
    _close(table["df"], want["df"], 1e-3)
    start = time.perf_counter()
    kr = fit.emmeans("service")
    fit.pairs("service")
    seconds = time.perf_counter() - start
    assert np.all(np.abs(kr["SE"] / table["SE"] - 1) < 1e-2)  # KR's adjustment is small at this size
    assert seconds < 10  # a bound against a dense q³ algorithm, not a benchmark (benchmarks/bench_study.py)


def test_ptukey_and_qtukey_are_r():
    """R 4.2's ptukey/qtukey (printed to 15 digits there)."""
    assert ptukey(3.0, 3, 20) == pytest.approx(0.889243202146494, rel=1e-13)
    assert ptukey(3.0, 3, 36842.9) == pytest.approx(0.914457428345042, rel=1e-13)  # df > 25,000: as ∞
    assert ptukey(3.0, 2.56, 20) == pytest.approx(0.918671311304363, rel=1e-13)
    assert ptukey(0.5, 6, 5) == pytest.approx(0.00123395632039887, rel=1e-12)
    assert ptukey(5.0, 10, 3.5) == pytest.approx(0.780296056992473, rel=1e-13)
    assert qtukey(0.95, 3, 20) == pytest.approx(3.57793458152557, rel=1e-12)
    assert qtukey(0.95, 6, 157.4) == pytest.approx(4.08021382407288, rel=1e-12)


def test_readme_example():
    """The README's worked example (prior weights, an offset, emmeans and pairs) is R's: Satterthwaite
    means and Tukey pairs as emmeans prints them, Kenward–Roger on the weighted covariance (emmeans'
    own, pbkrtest's, gives 2,181 df for 190 cells: it ignores the weights)."""
    ref = load_json("readme_example")
    cells = pd.read_csv(STUDY / "exam_cells.csv", dtype={"school": str})
    fit = sparselmm.fit(ref["formula"], cells, weights="n")
    assert fit.objective == pytest.approx(ref["objective"], rel=1e-10)
    table = fit.coef_table()
    for name, row in ref["satterthwaite"].items():
        assert table.loc[name, "df"] == pytest.approx(row["df"], rel=1e-4)
    means, pairs = fit.emmeans("intake", ddf="satterthwaite"), fit.pairs("intake", ddf="satterthwaite")
    _close(means["emmean"], ref["emmeans"]["emmean"], 1e-6, ref["emmeans"]["SE"])
    _close(means["df"], ref["emmeans"]["df"], 1e-4)
    assert list(pairs["contrast"]) == ref["pairs"]["contrast"]
    np.testing.assert_allclose(pairs["p.value"], ref["pairs"]["p"], rtol=1e-4, atol=1e-12)  # 1 − ptukey: ~1e-14 floor
    kr = fit.emmeans("intake")
    _close(kr["SE"], ref["kenward_roger_weighted"]["SE"], 1e-6)
    _close(kr["df"], ref["kenward_roger_weighted"]["df"], 1e-4)
    assert np.all(np.array(ref["kenward_roger_pbkrtest"]["df"]) > len(cells))


def test_command_line_marginal_means(tmp_path, capsys):
    from sparselmm.cli import main

    ref = load_json("readme_example")
    args = ["fit", str(STUDY / "exam_cells.csv"), ref["formula"], "--factor", "school", "--weights", "n",
            "--emmeans", "intake", "--ddf", "satterthwaite", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Estimated marginal means:" in text and "bottom 25% - mid 50%" in text
    assert "P value adjustment: tukey method for comparing a family of 3 estimates" in text
    assert main(args + ["--json", "--adjust", "holm"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert [r["contrast"] for r in out["pairs"]] == ref["pairs"]["contrast"]
    _close([r["emmean"] for r in out["emmeans"]], ref["emmeans"]["emmean"], 1e-6, ref["emmeans"]["SE"])


def test_means_of_a_model_read_in_pieces(tmp_path):
    """Parquet pieces: the grid from pass 1's levels and covariate sums, the same means, contrasts and
    Kenward–Roger df as the fit of the rows in memory."""
    ref, fit = _fit("exam_w")
    data = data_of("exam_w")
    for i, start in enumerate(range(0, len(data), 1500)):
        data.iloc[start:start + 1500].to_parquet(tmp_path / f"part-{i}.parquet")
    streamed = sparselmm.fit(ref["formula"], str(tmp_path / "part-*.parquet"), weights="w")
    for ddf in ("kenward-roger", "satterthwaite"):
        a = streamed.emmeans("vr", by="sex", ddf=ddf)
        b = fit.emmeans("vr", by="sex", ddf=ddf)
        assert list(a["vr"].astype(str)) == list(b["vr"].astype(str))
        np.testing.assert_allclose(a[["emmean", "SE", "df"]], b[["emmean", "SE", "df"]], rtol=1e-7)
        np.testing.assert_allclose(streamed.pairs("vr", ddf=ddf)["p.value"], fit.pairs("vr", ddf=ddf)["p.value"],
                                   rtol=1e-6)

"""Reporting: lmerTest's summary (text, HTML), to_dict/JSON, and the command line's inference options."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sparselmm.cli import main
from sparselmm.report import _abbreviate, format_pvalue, stars

from .conftest import DATA, reference_fit

SLEEP = str(DATA / "sleepstudy.csv")
FORMULA = "Reaction ~ Days + (Days|Subject)"


def _inference(model_id: str, kind: str) -> dict:
    return json.loads((DATA / "inference" / f"{model_id}_{kind}.inference.json").read_text())


@pytest.fixture(scope="module")
def sleep_reml():
    return reference_fit("sleepstudy", "sleepstudy_corr", "reml")


@pytest.fixture(scope="module")
def sleep_ml():
    return reference_fit("sleepstudy", "sleepstudy_corr", "ml")


def test_summary_has_lmertest_satterthwaite_table(sleep_reml):
    _, _, fit = sleep_reml
    ref = _inference("sleepstudy_corr", "reml")["satterthwaite"]
    s = fit.summary()
    fe = s.fixed_effects
    assert list(fe.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    for name, row in ref.items():
        got = fe.loc[name]
        assert got["df"] == pytest.approx(row["df"], rel=1e-4)
        assert got["Std. Error"] == pytest.approx(row["se"], rel=1e-5)
        assert got["Pr(>|t|)"] == pytest.approx(row["p"], rel=1e-3)
    text = str(s)
    assert "t-tests use Satterthwaite's method" in text
    # lmerTest prints: Days  10.467  1.546  17.000  6.771 3.26e-06 ***
    days = next(line for line in text.splitlines() if line.startswith("Days "))
    assert days.split() == ["Days", "10.467", "1.546", "17.000", "6.771", "3.26e-06", "***"]
    assert f"REML criterion at convergence: {fit.objective:.4f}" in text
    assert "(Intr)" in text and "-0.138" in text  # lme4's correlation of the fixed effects


def test_summary_parts_are_the_fit_values(sleep_reml):
    _, _, fit = sleep_reml
    s = fit.summary()
    r = fit.resid.to_numpy() / fit.sigma
    np.testing.assert_allclose(s.scaled_residuals.to_numpy(), np.quantile(r, [0, 0.25, 0.5, 0.75, 1]))
    variances = s.random_effects["Variance"].astype(float).to_numpy()
    np.testing.assert_allclose(variances, fit.varcorr.vcov[fit.varcorr.var2.isna()].to_numpy(), rtol=1e-4)
    assert s.random_effects["Corr"].tolist() == ["", f"{fit.varcorr.sdcor[2]:.2f}", ""]
    C = fit.cov_fe.to_numpy()
    assert s.correlation.iloc[1, 0] == pytest.approx(C[0, 1] / np.sqrt(C[0, 0] * C[1, 1]))
    assert s.groups == {"Subject": 18} and s.nobs == 180


def test_summary_ml_criteria_equal_lme4(sleep_ml):
    ref, _, fit = sleep_ml
    crit = fit.summary().criterion
    assert crit["AIC"] == pytest.approx(ref["aic"], abs=1e-6)
    assert crit["BIC"] == pytest.approx(ref["bic"], abs=1e-6)
    assert crit["logLik"] == pytest.approx(ref["loglik"], abs=1e-6)
    assert crit["deviance"] == pytest.approx(ref["objective"], abs=1e-6)
    assert crit["df.resid"] == ref["df_residual"]
    text = str(fit.summary())
    assert "maximum likelihood" in text and "1751.9" in text


def test_summary_without_ddf_is_lme4s_table_and_the_repr(sleep_reml):
    _, _, fit = sleep_reml
    s = fit.summary(ddf=None)
    assert list(s.fixed_effects.columns) == ["Estimate", "Std. Error", "t value"]
    np.testing.assert_allclose(s.fixed_effects["t value"], fit.fe_params / fit.bse_fe)
    assert "Satterthwaite" not in repr(fit) and "Pr(>|t|)" not in repr(fit)
    assert "Signif. codes" not in str(s)


def test_html_holds_the_tables(sleep_reml):
    _, _, fit = sleep_reml
    page = fit.summary()._repr_html_()
    assert page.count("<table") == 5  # criterion, residuals, random effects, fixed effects, correlation
    assert "17.000" in page and "3.26e-06" in page and "(Intercept)" in page
    assert "<table" in fit._repr_html_()


def test_to_dict_is_json_of_every_number(sleep_reml):
    _, _, fit = sleep_reml
    d = json.loads(fit.to_json(ranova=True))
    assert d["criterion"] == "REML" and d["nobs"] == 180
    assert d["fit"]["objective"] == fit.objective and d["sigma"] == fit.sigma
    assert d["beta"] == fit.fe_params.to_dict() and d["theta"] == fit.theta.to_dict()
    table = pd.DataFrame(d["coef_table"]["table"]).T
    pd.testing.assert_frame_equal(table, fit.coef_table(), check_dtype=False)
    anova = pd.DataFrame(d["anova"]["table"]).T
    assert anova.loc["Days", "DenDF"] == pytest.approx(fit.anova().loc["Days", "DenDF"])
    ci = pd.DataFrame(d["confint"]["table"]).T
    pd.testing.assert_frame_equal(ci, fit.confint(), check_dtype=False)
    assert d["ranova"]["<none>"]["LRT"] is None  # NaN becomes null
    reduced = fit.ranova().index[1]
    assert d["ranova"][reduced]["LRT"] == pytest.approx(fit.ranova().loc[reduced, "LRT"])
    assert d["cov_fe"]["Days"]["Days"] == pytest.approx(fit.bse_fe["Days"] ** 2)


def test_to_dict_of_an_intercept_only_model_has_no_anova():
    _, _, fit = reference_fit("dyestuff", "dyestuff", "reml")
    d = fit.to_dict(confint=None)
    assert "anova" not in d and "confint" not in d
    assert list(d["coef_table"]["table"]) == ["(Intercept)"]


def test_formatting_helpers():
    assert _abbreviate("(Intercept)") == "(Intr)"  # lme4's label
    assert _abbreviate("Days") == "Days"
    assert format_pvalue(1e-20) == "< 2e-16" and format_pvalue(3.2638e-06) == "3.26e-06"
    assert [stars(p) for p in (1e-4, 0.005, 0.02, 0.07, 0.5)] == ["***", "**", "*", ".", " "]


# --- the command line ----------------------------------------------------------
def test_command_line_json_equals_the_fit(capsys, sleep_ml):
    _, _, fit = sleep_ml
    assert main(["fit", SLEEP, FORMULA, "--ml", "--factor", "Subject", "--json", "--anova", "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["criterion"] == "ML"
    assert d["fit"]["objective"] == pytest.approx(fit.objective, abs=1e-8)
    assert d["coef_table"]["table"]["Days"]["df"] == pytest.approx(fit.coef_table().loc["Days", "df"], rel=1e-6)
    assert d["anova"]["table"]["Days"]["F value"] == pytest.approx(fit.anova().loc["Days", "F value"], rel=1e-6)


def test_command_line_reads_parquet_and_prints_inference(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    path = tmp_path / "sleep.parquet"
    pd.read_csv(SLEEP).to_parquet(path)
    assert main(["fit", str(path), FORMULA, "--factor", "Subject", "--anova", "--ranova", "--confint", "wald",
                 "--ddf", "kenward-roger"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Kenward-Roger's method" in out and "Type III Analysis of Variance" in out
    assert "Days in (Days | Subject)" in out and "97.5 %" in out
    assert "fitting 180 rows ..." in captured.err  # progress of the stages


def test_command_line_bootstrap_is_reproducible(capsys):
    args = ["fit", SLEEP, FORMULA, "--factor", "Subject", "--json", "--confint", "boot", "--nboot", "20",
            "--seed", "3", "--quiet"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)["confint"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["confint"] == first
    assert first["method"] == "boot" and "sigma" in first["table"]


@pytest.mark.parametrize("args, message", [
    (["--level", "1.5"], "--level"),
    (["--nboot", "0"], "--nboot"),
])
def test_command_line_rejects_bad_options(capsys, args, message):
    assert main(["fit", SLEEP, FORMULA] + args) == 2
    assert message in capsys.readouterr().err


def test_command_line_names_a_missing_file_and_factor(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "none.csv"), FORMULA]) == 2
    assert "none.csv" in capsys.readouterr().err
    pytest.importorskip("pyarrow")
    path = tmp_path / "sleep.parquet"
    pd.read_csv(SLEEP).to_parquet(path)
    assert main(["fit", str(path), FORMULA, "--factor", "Subjekt"]) == 2
    assert "'Subjekt'" in capsys.readouterr().err


def test_command_line_reads_a_directory_of_files_in_pieces(tmp_path, capsys, sleep_ml):
    """A directory (or a quoted glob) of Parquet files is read in pieces: the fit of the whole file."""
    pytest.importorskip("pyarrow")
    _, _, fit = sleep_ml
    data = pd.read_csv(SLEEP, dtype={"Subject": str})
    for i, start in enumerate(range(0, len(data), 50)):
        data.iloc[start:start + 50].to_parquet(tmp_path / f"part-{i}.parquet")
    assert main(["fit", str(tmp_path), FORMULA, "--ml", "--json", "--anova", "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fit"]["objective"] == pytest.approx(fit.objective, rel=1e-10)
    assert d["anova"]["table"]["Days"]["F value"] == pytest.approx(fit.anova().loc["Days", "F value"], rel=1e-6)
    assert main(["fit", str(tmp_path / "part-*.parquet"), FORMULA, "--factor", "Subject"]) == 2
    assert "--factor applies to one file" in capsys.readouterr().err


def test_command_exits_with_its_code_and_all_its_output():
    """``python -m sparselmm.cli`` (the console script's ``entry``): the whole summary on standard
    output and code 0, or the error on standard error and code 2, though it skips the interpreter's
    teardown."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "sparselmm.cli", "fit", SLEEP, FORMULA, "--quiet", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)  # all of it: it parses
    ref = _inference("sleepstudy_corr", "reml")["satterthwaite"]
    assert out["coef_table"]["table"]["Days"]["df"] == pytest.approx(ref["Days"]["df"], rel=1e-4)
    bad = subprocess.run([sys.executable, "-m", "sparselmm.cli", "fit", SLEEP, "Reaction ~ Dayz + (1|Subject)",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Dayz" in bad.stderr and bad.stdout == ""

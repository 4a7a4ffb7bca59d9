"""Results beyond the reference values: prediction, covariance, command line (tests/test_report.py: the summary)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparselmm.cli import main

from .conftest import DATA, reference_fit


@pytest.fixture(scope="module")
def sleep():
    return reference_fit("sleepstudy", "sleepstudy_corr", "reml")


def test_predict_on_fitting_data_is_fitted_values(sleep):
    _, data, fit = sleep
    np.testing.assert_allclose(fit.predict(data).to_numpy(), fit.fittedvalues.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(fit.resid.to_numpy(), data.Reaction.to_numpy() - fit.fittedvalues.to_numpy())


def test_predict_unknown_level_is_population_prediction(sleep):
    _, _, fit = sleep
    new = pd.DataFrame({"Days": [0.0, 5.0, 5.0], "Subject": ["999", "999", "308"]})
    got = fit.predict(new).to_numpy()
    beta = fit.fe_params.to_numpy()
    b308 = fit.random_effects["Subject"].loc["308"].to_numpy()
    want = [beta[0], beta[0] + 5 * beta[1], beta[0] + b308[0] + 5 * (beta[1] + b308[1])]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cov_fe_and_covariances(sleep):
    ref, _, fit = sleep
    se = np.sqrt(np.diag(fit.cov_fe.to_numpy()))
    np.testing.assert_allclose(se, fit.bse_fe.to_numpy())
    S = fit.cov_re()[0]
    vc = fit.varcorr
    assert S[0, 1] == pytest.approx(vc.vcov[2]) and S[1, 1] == pytest.approx(vc.vcov[1])


def test_command_line_fit(capsys):
    assert main(["fit", str(DATA / "sleepstudy.csv"), "Reaction ~ Days + (Days|Subject)", "--ml",
                 "--factor", "Subject"]) == 0
    out = capsys.readouterr().out
    assert "maximum likelihood" in out and " 1751.9 " in out  # lme4's deviance, 1751.939


def test_command_line_reports_errors(capsys):
    assert main(["fit", str(DATA / "sleepstudy.csv"), "Reaction ~ Dayz + (1|Subject)"]) == 2
    assert "'Dayz'" in capsys.readouterr().err

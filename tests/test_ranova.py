"""lmerTest's ``ranova``: which reduced model each random term gives, equal to lmerTest's table.

lmerTest reduces ``(1 + x | g)`` and ``(x | g)`` to ``(1 | g)``, and also ``(0 + x | g)``, ``(0 + f | g)``
and ``(f | g)`` (a factor); ``(1 | g)`` alone is removed; only the columns no other column of the
term contains are dropped (``x:z`` before ``x``); a reduced term equal to another term merges with
it (``(x || g)``). References: tests/data/study/ranova_*.json (lmerTest 3.1-3, lme4 converged tightly).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import sparselmm

from .study import data_of, load_json

CASES = ["slope_alone", "double_bar", "factor_no_intercept", "factor", "interaction_lhs", "two_covariates",
         "weighted", "machines_factor", "machines_nested"]
PARAMS = [(c, k) for c in CASES for k in ("reml", "ml")]


def _data(name: str):
    if name.startswith("machines"):
        return data_of("machines")
    d = data_of("sleepstudy_w")
    d["f"] = np.where(d["Days"] < 5, "early", "late")
    d["z"] = [float(f"{math.sin(i):.6f}") for i in range(1, len(d) + 1)]
    return d


@pytest.mark.parametrize("case, kind", PARAMS, ids=[f"{c}-{k}" for c, k in PARAMS])
def test_ranova_as_lmertest(case, kind):
    ref = load_json(f"ranova_{case}_{kind}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sparselmm.SingularFitWarning)
        fit = sparselmm.fit(ref["formula"], _data(case), reml=kind == "reml", weights=ref["weights"])
        assert fit.objective == pytest.approx(ref["objective"], rel=1e-8)
        for key, reduce_terms in (("ranova", True), ("ranova_removed", False)):
            table = fit.ranova(reduce_terms=reduce_terms)
            rows = ref[key]["rows"]
            assert list(table.index) == list(rows), key
            for label, row in rows.items():
                assert table.loc[label, "npar"] == row["npar"], (key, label)
                assert table.loc[label, "logLik"] == pytest.approx(row["logLik"], abs=1e-6), (key, label)
                if row["LRT"] is None:
                    continue
                assert table.loc[label, "LRT"] == pytest.approx(row["LRT"], abs=2e-6), (key, label)
                assert table.loc[label, "Df"] == row["Df"], (key, label)
                if row["p"] is None:  # Df 0: no test
                    assert np.isnan(table.loc[label, "Pr(>Chisq)"])
                else:
                    assert table.loc[label, "Pr(>Chisq)"] == pytest.approx(row["p"], rel=1e-4, abs=1e-12)


def test_reduced_formulas_as_lmertest():
    """The reduced models are lmerTest's (its formulae, up to the order of the terms)."""
    from sparselmm.inference.lrt import _random_formula, _reductions

    for case in CASES:
        ref = load_json(f"ranova_{case}_reml")
        model = sparselmm.LinearMixedModel(ref["formula"], _data(case), weights=ref["weights"])
        ours = {label: _random_formula(model.frame, terms) for label, terms in _reductions(model.frame)}
        theirs = ref["ranova"]["formulae"]
        assert list(ours) == list(theirs)
        for label, formula in theirs.items():
            assert _bars(ours[label]) == _bars(formula), (case, label)


def _bars(formula: str) -> set:
    """The random terms of a formula as sets of their columns and factors ('(0 + x | g)' = {x}, g)."""
    from sparselmm.formula import parse_formula, term_labels

    return {(frozenset(term_labels(t.expr)), t.factors) for t in parse_formula(formula).random}


def test_ranova_of_a_correlated_slope_on_insteval_dept():
    """REML ranova of y ~ service + (1|s) + (1|d) + (1 + service|dept): lme4's default optimizer stops
    2.1 short in logLik on the full model, so lmerTest's LRT for the slope is 72.52; with every model
    converged tightly (BOBYQA, rhoend 1e-12) it is 76.74, and ours is that optimum."""
    from sparselmm.datasets import load_insteval

    ref = load_json("ranova_insteval_slope")
    fit = sparselmm.fit(ref["formula"], load_insteval())
    table = fit.ranova()
    tight, default = ref["tight"]["ranova"]["rows"], ref["default"]["ranova"]["rows"]
    assert list(table.index) == list(tight)
    for label, row in tight.items():
        assert table.loc[label, "logLik"] == pytest.approx(row["logLik"], abs=1e-6)
        assert table.loc[label, "logLik"] >= default[label]["logLik"] - 1e-6
        if row["LRT"] is not None:
            assert table.loc[label, "LRT"] == pytest.approx(row["LRT"], abs=1e-5)
    slope = "service in (1 + service | dept)"
    assert table.loc[slope, "LRT"] - default[slope]["LRT"] > 4

"""Likelihood-ratio tests: lme4's ``anova(m0, m1, ...)``, lmerTest's ``ranova`` and ``drop1``.

Reduced models are refitted from the formula and the data of the fit. A model
left without random terms is a linear model, whose (REML) log-likelihood is
R's ``logLik.lm``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..formula import term_labels
from ..weights import whiten
from .anova import fixed_terms
from .distributions import chi2_sf


def _needs_data(result):
    if result.model.stream is not None:
        raise ValueError("likelihood-ratio tests refit reduced models from the data in memory: not available for a "
                         "model read in pieces")
    if result.model.data is None:
        raise ValueError("likelihood-ratio tests refit reduced models: they need a fit made from a formula and "
                         "data (sparselmm.fit or LinearMixedModel)")
    return result.model.data


def _refit(result, formula: str, reml: bool):
    """The same data and options (weights and offset too), another formula or criterion."""
    from ..model import LinearMixedModel  # noqa: PLC0415 (model imports results, which imports this)

    model = result.model
    opts = model.options
    data = _needs_data(result)
    new = LinearMixedModel(formula, data, reml=reml, missing=opts["missing"], backend=opts["backend"],
                           max_memory=opts["max_memory"], weights=opts["weights"], offset=opts["offset"],
                           device=opts.get("device", "cpu"))
    return new.fit()


def refit_ml(result):
    """The model refitted by maximum likelihood (lme4's ``refitML``); an ML fit is returned as it is."""
    if not result.reml:
        return result
    cache = result.__dict__.setdefault("_refits", {})
    if "ml" not in cache:
        cache["ml"] = result.model.with_criterion(reml=False).fit(theta0=result.theta.to_numpy())
    return cache["ml"]


class LinearModelFit:
    """A model left without random effects: (weighted) least squares, with R's ``logLik.lm``
    (its REML form for REML fits): ½ (Σ log w − N (log 2π + 1 − log N + log Σ w r²)) [− log|R|]."""

    def __init__(self, frame, reml: bool):
        y, X = whiten(frame.sqrtw, frame.y_offset, frame.X)
        n, p = X.shape
        self.reml, self.nobs = reml, n
        Q, R = np.linalg.qr(X) if p else (np.zeros((n, 0)), np.zeros((0, 0)))
        res = y - Q @ (Q.T @ y)
        N = n - p if reml else n
        llf = 0.5 * (-N * (np.log(2 * np.pi) + 1 - np.log(N) + np.log(res @ res)))
        if frame.weights is not None:
            llf += 0.5 * np.log(frame.weights).sum()
        if reml:
            llf -= np.sum(np.log(np.abs(np.diag(R))))
        self.llf = float(llf)
        self.df_modelwise = p + 1


def _term_label(rt) -> str:
    return f"({rt.expr} | {rt.group})"


def _random_formula(frame, terms) -> str:
    parsed = frame.formula
    parts = [parsed.fixed_with_offsets] + [_term_label(rt) for rt in terms]
    return f"{parsed.response} ~ " + " + ".join(parts)


def _identity(rt) -> tuple:
    """What makes two random terms the same term (R's formula update merges them)."""
    return frozenset(term_labels(rt.expr)), rt.factors


def _reductions(frame, reduce_terms: bool = True):
    """lmerTest's reduced models (``ranova``'s ``get_newforms``), one per (term, column): a term
    ``(1 | g)`` is removed; any other loses, one at a time, each of its columns that no other of
    its columns contains (R's ``drop.scope``: ``x:z`` before ``x`` and ``z``), and becomes
    ``(1 | g)`` when that was its only one: ``(x | g)``, ``(0 + x | g)``, ``(f | g)`` and
    ``(0 + f | g)`` all reduce to ``(1 | g)``. A reduced term equal to another term of the model
    merges with it, as R's ``update`` of the formula does. ``reduce_terms=False``: every term is
    removed whole. Yields (label, remaining terms)."""
    from ..formula import RandomTerm  # noqa: PLC0415

    terms = list(frame.formula.random)
    for k, rt in enumerate(terms):
        labels = [x for x in term_labels(rt.expr) if x != "1"]
        others = terms[:k] + terms[k + 1:]
        if not labels or not reduce_terms:
            yield _term_label(rt), others
            continue
        factors = {x: set(x.split(":")) for x in labels}
        scope = [x for x in labels if not any(factors[x] < factors[o] for o in labels)]
        for lab in scope:
            rest = [x for x in labels if x != lab]
            if not rest:
                expr = "1"
            else:
                expr = " + ".join(rest) if rt.has_intercept else "0 + " + " + ".join(rest)
            new = RandomTerm(expr, rt.factors)
            kept = others if _identity(new) in {_identity(o) for o in others} else others[:k] + [new] + others[k:]
            yield f"{lab} in {_term_label(rt)}", kept


RANOVA_COLUMNS = ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"]


def _lrt_table(rows: dict) -> pd.DataFrame:
    """``{label: (npar, logLik)}``, the full model labelled ``<none>``: each reduced model against it."""
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["npar", "logLik"])
    out["AIC"] = -2 * out["logLik"] + 2 * out["npar"]
    npar, llf = rows["<none>"]
    out["LRT"] = np.where(out.index == "<none>", np.nan, 2 * (llf - out["logLik"]))
    out["Df"] = np.where(out.index == "<none>", np.nan, npar - out["npar"])
    out["Pr(>Chisq)"] = chi2_sf(out["LRT"], out["Df"].where(out["Df"] > 0))  # Df 0: no test (NA), as lmerTest
    return out[RANOVA_COLUMNS]


def ranova(result, reduce_terms: bool = True) -> pd.DataFrame:
    """lmerTest's ``ranova``: each random term reduced (``reduce_terms``, see :func:`_reductions`) or
    removed, refitted with the same criterion, compared with the model by a likelihood-ratio test."""
    _needs_data(result)
    frame = result.model.frame
    rows = {"<none>": (result.df_modelwise, result.llf)}
    for label, terms in _reductions(frame, reduce_terms):
        if terms:
            fit = _refit(result, _random_formula(frame, terms), result.reml)
        else:
            fit = LinearModelFit(frame, result.reml)
        rows[label] = (fit.df_modelwise, fit.llf)
    return _lrt_table(rows)


def drop1(result) -> pd.DataFrame:
    """Each fixed term not contained in another removed, both models fitted by maximum likelihood,
    compared by a likelihood-ratio test (lme4's ``drop1(m, test = "Chisq")``)."""
    _needs_data(result)
    full = refit_ml(result)
    frame = result.model.frame
    terms = fixed_terms(result.model)
    intercept = "(Intercept)" in frame.fe_names
    rows = {"<none>": (full.df_modelwise, full.llf)}
    for name, _, factors in terms:
        if any(factors < other for _, _, other in terms):
            continue
        rest = [n for n, _, _ in terms if n != name]
        fixed = " + ".join(["1" if intercept else "0"] + rest + [f"offset({o})" for o in frame.formula.offsets])
        formula = f"{frame.formula.response} ~ {fixed} + " + " + ".join(_term_label(rt) for rt in frame.formula.random)
        fit = _refit(result, formula, reml=False)
        rows[name] = (fit.df_modelwise, fit.llf)
    return _lrt_table(rows)


ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def anova(*results, names=None, refit: bool = True) -> pd.DataFrame:
    """lme4's ``anova(m0, m1, ...)``: models ordered by their number of parameters, each compared with
    the one before by a likelihood-ratio test.

    REML fits are refitted by maximum likelihood (``refit=True``) when the models' fixed effects
    differ; REML fits with the same fixed effects are compared on the REML criterion.
    """
    if len(results) < 2:
        raise ValueError("anova() compares two or more fitted models")
    names = list(names) if names is not None else [f"m{i}" for i in range(len(results))]
    if len(names) != len(results):
        raise ValueError(f"{len(names)} names for {len(results)} models")
    nobs = {r.nobs for r in results}
    if len(nobs) > 1:
        raise ValueError(f"the models were fitted to different numbers of observations: {sorted(nobs)}")
    fixed = {tuple(r.model.frame.fe_names) for r in results}
    remls = {r.reml for r in results}
    if refit and any(r.reml for r in results) and (len(fixed) > 1 or len(remls) > 1):
        results = [refit_ml(r) for r in results]
    elif len(remls) > 1:
        raise ValueError("some models were fitted by REML and some by ML: use refit=True")
    order = sorted(range(len(results)), key=lambda i: results[i].df_modelwise)
    rows = []
    prev = None
    for i in order:
        r = results[i]
        dev = -2 * r.llf
        row = [r.df_modelwise, r.aic, r.bic, r.llf, dev, np.nan, np.nan, np.nan]
        if prev is not None:
            chisq = prev[4] - dev
            df = r.df_modelwise - prev[0]
            row[5:] = [chisq, df, chi2_sf(chisq, df) if df > 0 else np.nan]
        rows.append(row)
        prev = row
    return pd.DataFrame(rows, index=[names[i] for i in order], columns=ANOVA_COLUMNS)

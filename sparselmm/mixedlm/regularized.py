"""``MixedLM.fit_regularized(method="l1")``: statsmodels' coordinate descent on the engine's factor.

With the covariance held at the unpenalized fit, the penalized criterion in
β is, per coordinate j with the others fixed, a·β_j² + b·β_j + alpha_j·|β_j|
with a = x_j'V⁻¹x_j and b = −2 x_j'V⁻¹(y − X β_{−j}). Both come from
M = X'V⁻¹X = RX'RX/σ² and m = X'V⁻¹y = M β̂ (β̂ the GLS estimate), which
the factor of the fit already holds: a sweep costs O(p²), not a pass over
the rows per coordinate and group as in statsmodels.
"""

from __future__ import annotations

import warnings

import numpy as np

from .params import MixedLMParams


def fit_l1(model, alpha, ceps: float, ptol: float, maxit: int, fit_kwargs: dict):
    """statsmodels' L1 algorithm and results (its choices kept, noted where they are odd)."""
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

    from .model import _WARN_COV_SING
    from .results import MixedLMResults, MixedLMResultsWrapper

    k_fe = model.k_fe
    alpha = alpha * np.ones(k_fe) if np.isscalar(alpha) else np.asarray(alpha, dtype=float)
    mdf = model.fit(**fit_kwargs)
    fe_params = np.array(mdf.fe_params, dtype=float)
    sol = model._lmm.backend.solution(model._engine_theta(mdf._results._theta))
    M = sol.RX.T @ sol.RX / mdf.scale
    m = M @ sol.beta
    for _ in range(maxit):
        previous = fe_params.copy()
        for j in range(k_fe):
            if abs(fe_params[j]) < ceps:
                continue
            fe_params[j] = 0.0
            a = M[j, j]
            b = -2.0 * (m[j] - M[j] @ fe_params)
            if b > alpha[j]:
                fe_params[j] = -(b - alpha[j]) / (2 * a)
            elif b < -alpha[j]:
                fe_params[j] = -(b + alpha[j]) / (2 * a)
        if np.abs(previous - fe_params).max(initial=0.0) < ptol:
            break
    params_prof = np.array(mdf.params, dtype=float)
    params_prof[:k_fe] = fe_params
    # statsmodels passes the scaled vcomp where get_scale expects it unscaled, and evaluates the Hessian
    # at params_prof read in the model's parameterization: both kept, for the same numbers.
    scale = model.get_scale(fe_params, mdf.cov_re_unscaled, mdf.vcomp)
    hess, sing = model.hessian(params_prof)
    if sing:
        warnings.warn(_WARN_COV_SING, SingularMatrixWarning, stacklevel=3)
    pcov = np.full_like(hess, np.nan)
    ii = np.abs(params_prof) > ceps
    ii[k_fe:] = True
    ii = np.flatnonzero(ii)
    pcov[np.ix_(ii, ii)] = np.linalg.inv(-hess[np.ix_(ii, ii)])
    res = MixedLMResults(model, params_prof, pcov / scale)
    res.params_object = MixedLMParams.from_components(fe_params, cov_re=np.asarray(mdf.cov_re))
    res.fe_params, res.cov_re, res.vcomp, res.scale = fe_params, np.asarray(mdf.cov_re), mdf.vcomp, scale
    res.cov_re_unscaled = mdf.cov_re_unscaled
    res.method, res.converged, res.cov_pen = mdf.method, True, model.cov_pen
    res.k_fe, res.k_re, res.k_re2, res.k_vc = model.k_fe, model.k_re, model.k_re2, model.k_vc
    res.reml, res.use_sqrt, res.freepat, res.hist = mdf.reml, model.use_sqrt, None, None
    res._theta = mdf._results._theta
    return MixedLMResultsWrapper(res)

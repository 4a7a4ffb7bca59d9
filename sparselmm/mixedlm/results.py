"""statsmodels' MixedLMResults: same attributes, same meanings.

``params`` are statsmodels' packed parameters in the user
parameterization, *unscaled* (fe_params, lower(Ψ) row-major, vcomp);
``cov_re`` and ``vcomp`` are scaled by ``scale``. Standard errors come from
the Hessian of the log-likelihood in (fe_params, Ψ, vcomp) exactly as
statsmodels forms them: ``cov_params() = inv(−H)``, ``bse_re =
sqrt(scale · diag)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..driver import OptSummary
from ..errors import ConvergenceWarning
from ..results import LMMResults

if TYPE_CHECKING:
    from .model import MixedLM


@dataclass(frozen=True)
class ContrastResults:
    """A Wald test of linear combinations R·params (``t_test``), normal reference."""

    effect: np.ndarray
    sd: np.ndarray
    tvalue: np.ndarray
    pvalue: np.ndarray
    alpha: float = 0.05

    def conf_int(self, alpha: float | None = None) -> np.ndarray:
        q = norm.ppf(1 - (alpha or self.alpha) / 2)
        return np.column_stack([self.effect - q * self.sd, self.effect + q * self.sd])


class MixedLMResults:
    """Results of :meth:`MixedLM.fit` (statsmodels' names)."""

    @classmethod
    def from_fit(cls, model: MixedLM, theta, converged, message, hist, free) -> MixedLMResults:
        self = cls()
        self.model = model
        lmm = model._lmm
        opt = OptSummary(method="", theta0=theta, lower=lmm.lower, theta=np.asarray(theta, float),
                         converged=converged, message=message)
        self._lmm = LMMResults(lmm, opt, fit_seconds=0.0)
        self.converged, self.hist, self.freepat = converged, hist, free
        self.reml, self.method = model.reml, "REML" if model.reml else "ML"
        self.use_sqrt = model.use_sqrt
        self.k_fe, self.k_re, self.k_re2, self.k_vc = model.k_fe, model.k_re, model.k_re2, model.k_vc
        self.nobs = lmm.frame.n
        self.params_object = model._map.params_from_theta(np.asarray(theta, float), self._lmm.fe_params.to_numpy())
        self.scale = self._lmm.scale
        names_re = model.exog_re_names[:self.k_re]
        self._params = pd.Series(self.params_object.get_packed(use_sqrt=False, has_fe=True), index=model.param_names)
        self.fe_params = self._wrap(self.params_object.fe_params, model.exog_names)
        self.cov_re_unscaled = self._wrap(self.params_object.cov_re, names_re, names_re)
        self.cov_re = self._wrap(self.params_object.cov_re * self.scale, names_re, names_re)
        self.vcomp = self.params_object.vcomp * self.scale
        self.params = self._wrap(self._params.to_numpy(), model.param_names)
        self._warn_boundary()
        return self

    def _wrap(self, values, index, columns=None):
        """A pandas object for pandas or formula input, an ndarray otherwise (as statsmodels)."""
        values = np.asarray(values)
        if not self.model.use_pandas:
            return values
        if values.ndim == 2:
            return pd.DataFrame(values, index=index, columns=columns if columns is not None else index)
        return pd.Series(values, index=index)

    def _warn_boundary(self):
        f1 = self.k_re > 0 and np.min(np.abs(np.diag(np.asarray(self.cov_re)))) < 0.01
        f2 = self.k_vc > 0 and np.min(np.abs(self.vcomp)) < 0.01
        if f1 or f2:
            warnings.warn("The MLE may be on the boundary of the parameter space.", ConvergenceWarning, stacklevel=3)
        if np.any(np.diag(self._hessian) >= 0):
            warnings.warn("The Hessian matrix at the estimated parameter values is not positive definite.",
                          ConvergenceWarning, stacklevel=3)

    # --- covariance of the estimates ----------------------------------------------
    @cached_property
    def _hessian(self) -> np.ndarray:
        try:
            return self.model.hessian(self.params_object)[0]
        except (ValueError, np.linalg.LinAlgError):  # Ψ on the boundary: no two-sided differences
            return np.full((len(self._params),) * 2, np.nan)

    @cached_property
    def _pcov(self) -> np.ndarray:
        H = self._hessian
        if not np.all(np.isfinite(H)):
            return np.full_like(H, np.nan)
        if self.freepat is None:
            return np.linalg.inv(-H)
        pat = self.freepat.get_packed(use_sqrt=False, has_fe=True) != 0
        ii = np.flatnonzero(pat)
        out = np.zeros_like(H)
        if len(ii):
            out[np.ix_(ii, ii)] = np.linalg.inv(-H[np.ix_(ii, ii)])
        return out

    def cov_params(self):
        """Covariance of ``params`` (statsmodels' ``cov_params()``)."""
        return self._wrap(self._pcov, self._params.index)

    @property
    def bse(self):
        return self._wrap(np.sqrt(np.diag(self._pcov)), self._params.index)

    @property
    def bse_fe(self):
        return self._wrap(np.sqrt(np.diag(self._pcov))[:self.k_fe], self._params.index[:self.k_fe])

    @property
    def bse_re(self):
        return self._wrap(np.sqrt(self.scale * np.diag(self._pcov)[self.k_fe:]), self._params.index[self.k_fe:])

    @property
    def tvalues(self):
        return self._wrap(self._params.to_numpy() / np.sqrt(np.diag(self._pcov)), self._params.index)

    @property
    def pvalues(self):
        return self._wrap(2 * norm.sf(np.abs(np.asarray(self.tvalues))), self._params.index)

    def conf_int(self, alpha: float = 0.05):
        q = norm.ppf(1 - alpha / 2)
        p, se = self._params.to_numpy(), np.sqrt(np.diag(self._pcov))
        ci = np.column_stack([p - q * se, p + q * se])
        return pd.DataFrame(ci, index=self._params.index) if self.model.use_pandas else ci

    def t_test(self, r_matrix, use_t=None) -> ContrastResults:
        """Wald tests of R·params = 0 (rows of ``r_matrix``), normal reference as statsmodels' MixedLM."""
        R = np.atleast_2d(np.asarray(r_matrix, dtype=float))
        if R.shape[1] != len(self._params):
            raise ValueError(f"r_matrix needs {len(self._params)} columns, got {R.shape[1]}")
        effect = R @ self._params.to_numpy()
        sd = np.sqrt(np.einsum("ij,jk,ik->i", R, self._pcov, R))
        t = effect / sd
        return ContrastResults(effect, sd, t, 2 * norm.sf(np.abs(t)))

    # --- likelihood ------------------------------------------------------------
    @property
    def llf(self) -> float:
        return -0.5 * self._lmm.objective

    @property
    def aic(self) -> float:
        """AIC (NaN for REML fits, as statsmodels)."""
        if self.reml:
            return np.nan
        return -2 * self.llf + 2 * (self.k_fe + self.k_re2 + self.k_vc + 1)

    @property
    def bic(self) -> float:
        if self.reml:
            return np.nan
        return -2 * self.llf + np.log(self.nobs) * (self.k_fe + self.k_re2 + self.k_vc + 1)

    # --- random effects --------------------------------------------------------
    def _group_columns(self):
        """Per group: the columns of Z (re first, then each component) and their names."""
        model = self.model
        layout = self._lmm.model.layout
        out = {g: ([], []) for g in model.group_labels}
        k = 0
        if self.k_re:
            for gi, g in enumerate(model.group_labels):
                out[g][0].extend(layout.col_offset[0] + gi * self.k_re + np.arange(self.k_re))
                out[g][1].extend(model.exog_re_names)
            k = 1
        for j, name in enumerate(model.exog_vc.names):
            term = layout.terms[k + j]
            for li, (g, col) in enumerate(term.levels):
                out[g][0].append(layout.col_offset[k + j] + li)
                out[g][1].append(f"{name}[{col}]")
        return out

    @cached_property
    def random_effects(self) -> dict:
        """Conditional means of each group's random effects (a Series per group)."""
        b = self._lmm.model.layout.lambda_times(self._lmm.theta.to_numpy(), self._lmm._sol.u)
        return {g: pd.Series(b[cols], index=names) for g, (cols, names) in self._group_columns().items()}

    @cached_property
    def random_effects_cov(self) -> dict:
        """Conditional covariance of each group's random effects given the data."""
        lmm = self._lmm.model
        theta = self._lmm.theta.to_numpy()
        backend = lmm.backend
        Lam = lmm.layout.lambda_matrix(theta)
        out = {}
        for g, (cols, names) in self._group_columns().items():
            cols = np.asarray(cols, dtype=np.int64)
            Ainv = backend.inverse_columns(theta, cols)[cols]
            Lg = Lam[cols][:, cols].toarray()
            out[g] = pd.DataFrame(self.scale * Lg @ Ainv @ Lg.T, index=names, columns=names)
        return out

    # --- fitted values ---------------------------------------------------------
    @property
    def fittedvalues(self) -> np.ndarray:
        return self._lmm.fittedvalues.to_numpy()

    @property
    def resid(self) -> np.ndarray:
        return self._lmm.resid.to_numpy()

    # --- profile likelihood ----------------------------------------------------
    def profile_re(self, re_ix, vtype, num_low=5, dist_low=1.0, num_high=5, dist_high=1.0, **fit_kwargs):
        """Profile log-likelihood of one variance (statsmodels' ``profile_re``).

        For ``vtype="re"`` the variance of random effect ``re_ix`` (index into
        ``exog_re``), for ``vtype="vc"`` the variance component named
        ``re_ix``, is held at values from ``dist_low`` below to ``dist_high``
        above its estimate (on the scaled variance), the other parameters
        refitted. Returns an array of rows (variance, log-likelihood).
        """
        from .model import MixedLM

        model = self.model
        if vtype == "re":
            ix = np.arange(self.k_re)
            ix[0], ix[re_ix] = re_ix, 0
            value = self.cov_re.to_numpy()[re_ix, re_ix]
        elif vtype == "vc":
            j = model.exog_vc.names.index(re_ix)
            value = self.vcomp[j]
        else:
            raise ValueError("vtype must be 're' or 'vc'")
        low, high = (value - dist_low) / self.scale, (value + dist_high) / self.scale
        if low <= 0:
            raise ValueError("dist_low is too large and would result in a negative variance. Try a smaller value.")
        ru0 = value / self.scale
        rvalues = np.concatenate([np.linspace(low, ru0, num_low + 1), np.linspace(ru0, high, num_high + 1)[1:]])
        rows = []
        for rv in rvalues:
            if vtype == "re":
                sub = MixedLM(model.endog, model.exog, model.groups, model.exog_re[:, ix], model.exog_vc,
                              missing=model.missing, backend=model._backend)
                start = self.params_object.copy()
                start.cov_re = start.cov_re[np.ix_(ix, ix)]
                # the first Cholesky entry fixes Ψ[0, 0] = T[0, 0]²; the rest of T is free
                T = np.linalg.cholesky(start.cov_re + 1e-12 * np.eye(self.k_re)) if self.k_re else start.cov_re
                T[:, 0] *= np.sqrt(rv) / T[0, 0]
                start.cov_re = T @ T.T
                free = start.copy()
                free.cov_re = np.ones((self.k_re, self.k_re))
                free.cov_re[0, 0] = 0.0
                free.vcomp = np.ones(self.k_vc)
            else:
                sub = model
                start = self.params_object.copy()
                start.vcomp = start.vcomp.copy()
                start.vcomp[j] = rv
                free = start.copy()
                free.cov_re = np.ones((self.k_re, self.k_re))
                free.vcomp = np.ones(self.k_vc)
                free.vcomp[j] = 0.0
            free.fe_params = np.ones(self.k_fe)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                res = sub.fit(start_params=start, reml=self.reml, free=free, **fit_kwargs)
            rows.append((rv * res.scale, res.llf))
        model.reml = self.reml
        return np.array(rows)

    # --- summary -----------------------------------------------------------------
    def summary(self, yname=None, xname_fe=None, xname_re=None, title=None, alpha=0.05) -> str:
        """statsmodels' summary table, as text."""
        model = self.model
        sizes = pd.Series(model.groups[model._rows()]).value_counts().to_numpy()
        info = [("Model:", "MixedLM"), ("Dependent Variable:", yname or model.endog_names),
                ("No. Observations:", str(self.nobs)), ("Method:", self.method),
                ("No. Groups:", str(model.n_groups)), ("Scale:", f"{self.scale:.4f}"),
                ("Min. group size:", f"{sizes.min():.0f}"), ("Log-Likelihood:", f"{self.llf:.4f}"),
                ("Max. group size:", f"{sizes.max():.0f}"), ("Converged:", "Yes" if self.converged else "No"),
                ("Mean group size:", f"{sizes.mean():.1f}"), ("", "")]
        lines = [title or "Mixed Linear Model Regression Results", "=" * 70]
        for i in range(0, len(info), 2):
            (a, b), (c, d) = info[i], info[i + 1]
            lines.append(f"{a:<18} {b:<16} {c:<20} {d}")
        lines.append("-" * 70)
        q = norm.ppf(1 - alpha / 2)
        names = list(self._params.index)
        if xname_fe is not None:
            names[:self.k_fe] = xname_fe
        if xname_re is not None:
            names[self.k_fe:] = xname_re
        rows = []
        bse = np.sqrt(np.diag(self._pcov))
        for i, name in enumerate(names):
            if i < self.k_fe:
                est, se = self._params.iloc[i], bse[i]
                z = est / se
                rows.append((name, est, se, z, 2 * norm.sf(abs(z)), est - q * se, est + q * se))
            else:
                est = self._params.iloc[i] * self.scale
                rows.append((name, est, np.sqrt(self.scale) * bse[i]) + (np.nan,) * 4)
        table = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows],
                             columns=["Coef.", "Std.Err.", "z", "P>|z|", f"[{alpha / 2}", f"{1 - alpha / 2}]"])
        lines.append(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep=""))
        lines.append("=" * 70)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

"""statsmodels' ``MixedLM`` on sparselmm's engine: change one import.

The class is a statsmodels ``LikelihoodModel`` (statsmodels' data handling,
names, formulas, ``t_test``/``f_test``/``wald_test``, summaries, pickling),
with the likelihood, score, Hessian and fit of sparselmm: the random
effects become sparselmm terms (:mod:`.design`), whose crossproducts are
formed once; dense per-group blocks when the groups are independent,
blocked or CHOLMOD factors when one group holds crossed variance
components. No per-group lists are built unless a caller asks for them
(``row_indices``, ``group_list``).
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd
import statsmodels.base.model as base
from statsmodels.base._penalties import Penalty
from statsmodels.regression import mixed_linear_model as sm_mixed
from statsmodels.regression.mixed_linear_model import MixedLMParams, VCSpec
from statsmodels.tools.sm_exceptions import ConvergenceWarning, SingularMatrixWarning

from ..driver import optimize, polish
from ..errors import DataError
from ..frame import ModelFrame
from ..lapack import fit_blas_threads
from ..memory import without_hugepage_advice
from ..model import LinearMixedModel
from .design import Component, engine_design
from .params import ThetaMap
from .reparam import door_problem

#: statsmodels' optimizer names → sparselmm's driver methods (all gradient methods: Newton's).
_METHODS = {"nm": "nelder-mead", "nelder-mead": "nelder-mead", "powell": "powell"}
_FIT_KWARGS = ["gtol", "maxiter", "eps", "maxcor", "ftol", "tol", "disp", "maxls"]
_INIT_KWARGS = ["missing_idx", "model_spec", "formula"]
_WARN_COV_SING = "The random effects covariance matrix is singular."
#: A fit whose Ψ or a variance component (relative to the residual variance) has an eigenvalue below this
#: warns that the random-effects covariance is (nearly) singular. statsmodels warns where its optimizer
#: visits a singular Ψ; sparselmm's does not wander there, so the warning is on the estimate itself.
NEAR_SINGULAR = 1e-3


class DataVCSpec(VCSpec):
    """Variance components evaluated once over all rows (``from_formula``).

    ``mats`` and ``colnames`` (statsmodels' per-group matrices) are built
    only when read; the engine uses ``components``.
    """

    def __init__(self, components: list[Component], group_rows):
        self.names = [c.name for c in components]
        self.components = components
        self._group_rows = group_rows

    @cached_property
    def colnames(self):
        return [[list(c.level_names[c.level_group == g]) for g in range(len(self._group_rows()))]
                for c in self.components]

    @cached_property
    def mats(self):
        out = []
        for c in self.components:
            mats = []
            for g, rows in enumerate(self._group_rows()):
                levs = np.flatnonzero(c.level_group == g)
                M = np.zeros((len(rows), len(levs)))
                pos = np.searchsorted(rows, c.rows)
                sel = np.isin(c.levels, levs)
                M[pos[sel], np.searchsorted(levs, c.levels[sel])] = c.values[sel]
                mats.append(M)
            out.append(mats)
        return out


class MixedLM(base.LikelihoodModel):
    """Linear mixed effects model (statsmodels' ``MixedLM``, same arguments and results).

    Parameters
    ----------
    endog, exog, groups, exog_re, exog_vc, use_sqrt, missing
        As statsmodels' ``MixedLM``.
    backend : {"auto", "dense", "blocked", "sparse"}
        sparselmm's solver (see :class:`sparselmm.LinearMixedModel`).
    max_memory : float, optional
        Bytes the solver's factor may take; a larger model raises
        :class:`~sparselmm.errors.ModelSizeError` before any numeric work.
    """

    def __init__(self, endog, exog, groups, exog_re=None, exog_vc=None, use_sqrt=True, missing="none",
                 backend="auto", max_memory=None, **kwargs):
        for key in kwargs:
            if key not in _INIT_KWARGS:
                raise ValueError(f"argument {key} not permitted for MixedLM initialization")
        self.use_sqrt = use_sqrt
        self.reml = True
        self.fe_pen = self.re_pen = self.cov_pen = None
        self._freepat = None
        self.backend, self.max_memory = backend, max_memory
        if isinstance(exog_vc, dict):
            warnings.warn("Using deprecated variance components format", FutureWarning, stacklevel=2)
            exog_vc = sm_mixed._convert_vc(exog_vc)
        self.exog_vc = exog_vc if exog_vc is not None else VCSpec([], [], [])
        self.k_vc = len(self.exog_vc.names)
        if exog is not None and isinstance(exog, np.ndarray) and exog.ndim == 1:
            exog = exog[:, None]
        if exog_re is not None and isinstance(exog_re, np.ndarray) and exog_re.ndim == 1:
            exog_re = exog_re[:, None]
        super().__init__(endog, exog, groups=groups, exog_re=exog_re, missing=missing, **kwargs)
        self._init_keys.extend(["use_sqrt", "exog_vc", "backend", "max_memory"])
        self.k_fe = self.exog.shape[1]
        if exog_re is None and self.k_vc == 0:  # the default: a random intercept per group
            self.k_re = self.k_re2 = 1
            self.exog_re = np.ones((len(self.endog), 1))
            self.data.exog_re = self.exog_re
            names = ["Group Var"]
            self.data.param_names = self.exog_names + names
            self.data.exog_re_names = self.data.exog_re_names_full = names
        elif exog_re is not None:
            self.data.exog_re = exog_re
            self.exog_re = np.asarray(exog_re, dtype=float)
            if self.exog_re.ndim == 1:
                self.exog_re = self.exog_re[:, None]
            self.k_re = self.exog_re.shape[1]
            self.k_re2 = self.k_re * (self.k_re + 1) // 2
        else:
            self.k_re = self.k_re2 = 0
        if not self.data._param_names:
            names, re_names, re_full = sm_mixed.MixedLM._make_param_names(self, exog_re)
            self.data.param_names, self.data.exog_re_names, self.data.exog_re_names_full = names, re_names, re_full
        self.k_params = self.k_fe + self.k_re2
        groups = np.asarray(self.groups)
        if len(groups) != len(self.endog):
            raise DataError(f"groups has {len(groups)} entries, endog has {len(self.endog)}", column="groups")
        if pd.isna(groups).any():
            raise DataError(f"groups has {int(pd.isna(groups).sum())} missing values; use missing='drop'",
                            column="groups")
        codes, labels = pd.factorize(groups, sort=True)
        self._group_codes = codes.astype(np.int64)
        self.group_labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        self.n_groups = len(self.group_labels)
        self.nobs = self.n_totobs = len(self.endog)
        self._map = ThetaMap(self.k_re, self.k_vc)
        self._engines: dict[bool, LinearMixedModel] = {}

    def __getstate__(self):  # the engine (factors, compiled kernels) is rebuilt on demand
        state = self.__dict__.copy()
        state["_engines"] = {}
        return state

    @property
    def param_names(self) -> list[str]:
        """Names of the packed parameters (``model.data.param_names``)."""
        return self.data.param_names

    # --- statsmodels' per-group views, built only when asked for --------------
    @cached_property
    def _group_rows(self) -> list[np.ndarray]:
        order = np.argsort(self._group_codes, kind="stable")
        bounds = np.searchsorted(self._group_codes[order], np.arange(self.n_groups + 1))
        return [order[bounds[i]:bounds[i + 1]] for i in range(self.n_groups)]

    @cached_property
    def row_indices(self) -> dict:
        """Rows of each group (statsmodels' ``row_indices``)."""
        return dict(zip(self.group_labels, self._group_rows))

    def group_list(self, array):
        """``array`` split by group (statsmodels' ``group_list``)."""
        if array is None:
            return None
        array = np.asarray(array)
        return [np.array(array[rows]) for rows in self._group_rows]

    @cached_property
    def endog_li(self):
        return self.group_list(self.endog)

    @cached_property
    def exog_li(self):
        return self.group_list(self.exog)

    @cached_property
    def exog_re_li(self):
        return self.group_list(self.exog_re)

    # --- the engine ------------------------------------------------------------
    @cached_property
    def _design(self):
        for name, a in (("endog", self.endog), ("exog", self.exog), ("exog_re", self.exog_re)):
            if a is not None and not np.all(np.isfinite(a)):
                raise DataError(f"{name} has missing or infinite values; use missing='drop' to drop the rows "
                                "with missing values", column=name)
        re_names = list(self.data.exog_re_names)[:self.k_re]
        return engine_design(self._group_codes, self.group_labels, self.exog_re if self.k_re else None,
                             re_names, self._design_components)

    @cached_property
    def _design_components(self) -> list[Component]:
        """The variance components over all rows."""
        vc = self.exog_vc
        if isinstance(vc, DataVCSpec):
            return vc.components
        return [Component.from_groups(name, vc.mats[j], vc.colnames[j], self._group_rows)
                for j, name in enumerate(vc.names)]

    def _engine(self, reml: bool) -> LinearMixedModel:
        """The sparselmm model (crossproducts and backend), built once per criterion."""
        if reml not in self._engines:
            design = self._design
            frame = ModelFrame(formula=None, y=np.asarray(self.endog, dtype=float),
                               X=np.ascontiguousarray(self.exog, dtype=float), fe_names=list(self.exog_names),
                               terms=design.terms, fixed_spec=None, term_specs=[],
                               row_index=pd.RangeIndex(len(self.endog)))
            self._engines[reml] = LinearMixedModel.from_frame(frame, reml=reml, backend=self.backend,
                                                              group_codes=self._group_codes,
                                                              max_memory=self.max_memory)
        return self._engines[reml]

    @property
    def _lmm(self) -> LinearMixedModel:
        return self._engine(self.reml)

    def _engine_theta(self, door_theta) -> np.ndarray:
        return np.asarray(door_theta, dtype=float)[self._design.expand]

    def _door_gradient(self, g_engine) -> np.ndarray:
        return np.bincount(self._design.expand, weights=g_engine, minlength=self.k_re2 + self.k_vc)

    # --- parameters --------------------------------------------------------------
    def _params(self, params, has_fe: bool) -> MixedLMParams:
        if isinstance(params, MixedLMParams):
            return params
        return MixedLMParams.from_packed(params, self.k_fe, self.k_re, self.use_sqrt, has_fe=has_fe)

    def _theta(self, params, pa: MixedLMParams) -> np.ndarray:
        """The door's θ: packed square-root parameters are θ itself, whatever their signs."""
        if self.use_sqrt and not isinstance(params, MixedLMParams):
            return self._map.theta_from_sqrt(np.asarray(params, dtype=float)[len(params) - self.k_re2 - self.k_vc:])
        return self._map.theta_from_params(pa)

    # --- likelihood --------------------------------------------------------------
    def loglike(self, params, profile_fe=True) -> float:
        """The (restricted) log-likelihood, the scale profiled out (and ``fe_params`` if ``profile_fe``)."""
        pa = self._params(params, has_fe=False)
        theta = self._engine_theta(self._theta(params, pa))
        backend = self._lmm.backend
        if profile_fe:
            llf = -0.5 * backend.objective(theta)
            fe = backend.solution(theta).beta if self.fe_pen is not None else None
        else:
            fe = np.asarray(pa.fe_params, dtype=float)
            llf = -0.5 * backend.objective_at(theta, fe)
        if self.cov_pen is not None and self.k_re > 0:
            llf -= self.cov_pen.func(pa.cov_re, np.linalg.pinv(pa.cov_re))
        if self.fe_pen is not None:
            llf -= self.fe_pen.func(fe)
        return llf

    def score(self, params, profile_fe=True) -> np.ndarray:
        """Gradient of :meth:`loglike` in the model's parameterization (``use_sqrt``)."""
        pa = self._params(params, has_fe=False)
        s = self._score(pa, self._theta(params, pa), profile_fe, self.use_sqrt)
        if self._freepat is not None:
            free = self._freepat
            mask = np.concatenate([[] if profile_fe else free.fe_params, free.cov_re[np.tril_indices(self.k_re)],
                                   free.vcomp])
            s = s * mask
        return s

    def score_sqrt(self, params, calc_fe=True):
        """(score_fe, score_re, score_vc) with respect to the Cholesky factor of Ψ and √vcomp."""
        pa = self._params(params, True)
        return self._split(self._score(pa, self._theta(params, pa), not calc_fe, True, with_fe=calc_fe), calc_fe)

    def score_full(self, params, calc_fe):
        """(score_fe, score_re, score_vc) with respect to Ψ and vcomp."""
        pa = self._params(params, True)
        theta = self._map.theta_from_params(pa)
        return self._split(self._score(pa, theta, not calc_fe, False, with_fe=calc_fe), calc_fe)

    def _split(self, s, with_fe):
        k = self.k_fe if with_fe else 0
        return s[:k], s[k:k + self.k_re2], s[k + self.k_re2:]

    def _score(self, pa, theta, profile_fe: bool, sqrt: bool, with_fe: bool | None = None) -> np.ndarray:
        with_fe = not profile_fe if with_fe is None else with_fe
        backend = self._lmm.backend
        beta = None if profile_fe else np.asarray(pa.fe_params, dtype=float)
        t = self._engine_theta(theta)
        g = self._door_gradient(-0.5 * backend.gradient(t, beta))
        if sqrt:
            g = self._map.sqrt_from_theta(g)
        else:  # ∂ℓ/∂θ = J'∂ℓ/∂ψ, J = ∂ψ/∂θ square (singular only on the boundary: least squares there)
            g = np.linalg.lstsq(self._map.user_jacobian(theta).T, g, rcond=None)[0]
        if self.cov_pen is not None and self.k_re > 0 and not sqrt:
            cov_re = np.asarray(pa.cov_re, dtype=float)
            g[:self.k_re2] -= self.cov_pen.deriv(cov_re, np.linalg.pinv(cov_re))
        if not with_fe:
            return g
        g_fe = np.zeros(self.k_fe) if beta is None else -0.5 * backend.objective_gradient_beta(t, beta)
        if self.fe_pen is not None and beta is not None:
            g_fe = g_fe - self.fe_pen.deriv(beta)
        return np.concatenate([g_fe, g])

    def hessian(self, params):
        """Hessian of the log-likelihood in (fe_params, lower(Ψ), vcomp); returns ``(hess, sing)``.

        The fixed-effects block is analytic (−ν X'V⁻¹X / wrss at β̂); the
        columns of the variance parameters are central differences of the
        analytic score, Richardson-extrapolated (4 scores each, error O(h⁴)). On or near the boundary (Ψ singular, a
        variance component 0) it is taken at Ψ + δI and vcomp + δ,
        δ = 1e-7 · max(1, |Ψ|), with steps that keep Ψ positive definite: the
        log-likelihood is smooth there, and statsmodels' optimum stops a
        little inside. ``sing``: Ψ is singular, as statsmodels.
        """
        pa = self._params(params, has_fe=True)
        cov_re = np.asarray(pa.cov_re, dtype=float)
        vcomp = np.asarray(pa.vcomp, dtype=float)
        sing = False
        if self.k_re:
            try:
                np.linalg.inv(cov_re)
            except np.linalg.LinAlgError:
                sing = True
        delta = 1e-7 * max(1.0, np.abs(cov_re).max(initial=0.0), np.abs(vcomp).max(initial=0.0))
        w = np.linalg.eigvalsh(cov_re) if self.k_re else np.zeros(0)
        if self.k_re and w.min() < delta:
            cov_re = cov_re + (delta - min(w.min(), 0.0)) * np.eye(self.k_re)
        vcomp = np.maximum(vcomp, delta)
        x0 = MixedLMParams.from_components(pa.fe_params, cov_re, vcomp=vcomp).get_packed(use_sqrt=False, has_fe=True)
        low = min(np.linalg.eigvalsh(cov_re).min(initial=np.inf), vcomp.min(initial=np.inf))

        def grad(x):
            p = MixedLMParams.from_packed(x, self.k_fe, self.k_re, use_sqrt=False, has_fe=True)
            return self._score(p, self._map.theta_from_params(p), profile_fe=False, sqrt=False, with_fe=True)

        k, kf = len(x0), self.k_fe
        H = np.zeros((k, k))
        backend = self._lmm.backend
        theta = self._engine_theta(self._map.theta_from_params(
            MixedLMParams.from_packed(x0, kf, self.k_re, use_sqrt=False, has_fe=True)))
        beta = x0[:kf]
        nu = backend.cp.n - backend.p if self.reml else backend.cp.n
        sol = backend.solution(theta)
        RX = sol.RX
        wrss = backend.weighted_rss(theta, beta)
        M = RX.T @ RX
        d = M @ (beta - sol.beta)
        H[:kf, :kf] = -nu * (M / wrss - 2.0 * np.outer(d, d) / wrss ** 2)
        if self.fe_pen is not None:
            H[:kf, :kf] -= np.diag(self.fe_pen.deriv2(beta))
        for i in range(kf, k):
            h = min(1e-4 * max(1.0, abs(x0[i])), 0.25 * low)  # Ψ ± h E_ij, vcomp ± h stay positive definite
            e = np.zeros(k)
            e[i] = h
            d1 = (grad(x0 + e) - grad(x0 - e)) / (2 * h)
            d2 = (grad(x0 + e / 2) - grad(x0 - e / 2)) / h
            H[:, i] = (4 * d2 - d1) / 3  # Richardson: error O(h⁴)
        H[kf:, :kf] = H[:kf, kf:].T
        H[kf:, kf:] = (H[kf:, kf:] + H[kf:, kf:].T) / 2
        return H, sing

    def get_fe_params(self, cov_re, vcomp, tol=1e-10):
        """GLS fixed effects at (Ψ, vcomp); returns ``(fe_params, singular)``."""
        if self.k_fe == 0:
            return np.array([]), False
        pa = MixedLMParams.from_components(np.zeros(self.k_fe), cov_re, vcomp=vcomp)
        sol = self._lmm.backend.solution(self._engine_theta(self._map.theta_from_params(pa)))
        sing = bool(self.k_re and np.linalg.eigvalsh(np.asarray(cov_re)).min() < tol) or \
            bool(np.size(vcomp) and np.min(vcomp) < tol)
        return sol.beta.copy(), sing

    def get_scale(self, fe_params, cov_re, vcomp) -> float:
        """Residual variance at the given fixed effects and (Ψ, vcomp)."""
        if self.k_re:
            try:
                np.linalg.inv(cov_re)
            except np.linalg.LinAlgError:
                warnings.warn(_WARN_COV_SING, SingularMatrixWarning, stacklevel=2)
        pa = MixedLMParams.from_components(np.zeros(self.k_fe), cov_re, vcomp=vcomp)
        theta = self._engine_theta(self._map.theta_from_params(pa))
        backend = self._lmm.backend
        n, p = backend.cp.n, backend.p
        return backend.weighted_rss(theta, np.asarray(fe_params, dtype=float)) / (n - p if self.reml else n)

    def predict(self, params, exog=None) -> np.ndarray:
        """Fixed-effects mean X β (statsmodels' ``predict``)."""
        exog = self.exog if exog is None else exog
        fe = params.fe_params if isinstance(params, MixedLMParams) else np.asarray(params)[:self.k_fe]
        return np.dot(exog, fe)

    def get_distribution(self, params, scale, exog):
        """A simulator of the model at packed ``params`` (Ψ scaled by ``scale``), statsmodels' signature."""
        from .distribution import MixedLMDistribution

        return MixedLMDistribution(self, params, scale, exog)

    # --- fitting -------------------------------------------------------------------
    def fit(self, start_params=None, reml=True, niter_sa=0, do_cg=True, fe_pen=None, cov_pen=None, free=None,
            full_output=False, method=None, **fit_kwargs):
        """Fit by REML (default) or ML, statsmodels' arguments.

        The optimizer is sparselmm's (an EM step, Newton's method on the
        analytic gradient and average information; see
        :mod:`sparselmm.driver`) for every gradient method statsmodels
        names; ``"nm"`` and ``"powell"`` run scipy's. ``free`` holds the
        square-root parameters marked 0 at their start values.
        """
        bad = sorted(set(fit_kwargs) - set(_FIT_KWARGS))
        if bad:
            warnings.warn(f"Argument{'s' if len(bad) > 1 else ''} {', '.join(bad)} not used by MixedLM.fit. "
                          "Future versions will raise on these arguments.", FutureWarning, stacklevel=2)
        methods = ["bfgs", "lbfgs", "cg"] if method is None else [method] if isinstance(method, str) else method
        for meth in methods:
            if meth.lower() in ("newton", "ncg"):
                raise ValueError(f"method {meth} not available for MixedLM")
        self.reml, self.cov_pen, self.fe_pen, self._freepat = reml, cov_pen, fe_pen, free
        if start_params is None:
            pa = MixedLMParams(self.k_fe, self.k_re, self.k_vc)
            pa.fe_params, pa.cov_re, pa.vcomp = np.zeros(self.k_fe), np.eye(self.k_re), np.ones(self.k_vc)
        elif isinstance(start_params, MixedLMParams):
            pa = start_params
        elif len(start_params) == self.k_fe + self.k_re2 + self.k_vc:
            pa = MixedLMParams.from_packed(start_params, self.k_fe, self.k_re, self.use_sqrt, has_fe=True)
        elif len(start_params) == self.k_re2 + self.k_vc:
            pa = MixedLMParams.from_packed(start_params, self.k_fe, self.k_re, self.use_sqrt, has_fe=False)
        else:
            raise ValueError("invalid start_params")
        theta = self._map.theta_from_params(pa)
        hist = [] if full_output else None
        converged = False
        if do_cg:
            theta, converged = self._optimize(theta, free, methods, hist)
        return self._results(theta, converged, hist, free)

    def _optimize(self, theta0, free, methods, hist):
        """Minimize over the door's θ; returns (θ, converged)."""
        lmm = self._lmm
        mask = np.ones(len(theta0), dtype=bool)
        if free is not None:
            mask = self._map.theta_from_sqrt(free.get_packed(use_sqrt=False, has_fe=False)) != 0
        if not mask.any():
            return theta0, True
        engine = lmm.problem()
        if self.fe_pen is not None or self.cov_pen is not None:  # penalized: the door's own objective
            engine = _penalized(self, engine)
        design = self._design
        nlevels = np.array([t.nlevels for t in design.terms for _ in range(t.ntheta)], dtype=float)
        problem = door_problem(engine, design.expand, nlevels, theta0, mask)
        x = theta0[mask]
        converged = False
        for j, meth in enumerate(methods):
            with fit_blas_threads(lmm.backend.blas_threads), without_hugepage_advice():
                opt = optimize(problem, x, method=_METHODS.get(meth.lower(), "auto"))
            x = opt.theta
            if hist is not None:
                hist.append(dict(converged=opt.converged, iterations=opt.niter, message=opt.message,
                                 allvecs=[p for p, _ in opt.path]))
            converged = opt.converged
            if converged:
                x = polish(problem, x)
                break
            if j + 1 < len(methods):
                warnings.warn(f"Retrying MixedLM optimization with {methods[j + 1]}", ConvergenceWarning,
                              stacklevel=3)
            else:
                warnings.warn("MixedLM optimization failed, trying a different optimizer may help.",
                              ConvergenceWarning, stacklevel=3)
        theta = theta0.copy()
        theta[mask] = problem.canonical(x) if problem.canonical else x
        if not converged:
            gn = np.sqrt(np.sum(self.score(self._map.sqrt_from_theta(theta)) ** 2))
            warnings.warn(f"Gradient optimization failed, |grad| = {gn:f}", ConvergenceWarning, stacklevel=3)
        return theta, converged

    def _results(self, theta, converged, hist, free):
        from .results import MixedLMResults, MixedLMResultsWrapper

        params = self._map.params_from_theta(theta)
        fe_params, _ = self.get_fe_params(params.cov_re, params.vcomp)
        smallest = min(np.linalg.eigvalsh(params.cov_re).min(initial=np.inf), params.vcomp.min(initial=np.inf))
        if smallest < NEAR_SINGULAR:
            what = "singular" if smallest < 1e-10 else \
                f"nearly singular (smallest eigenvalue {smallest:.2g} times the residual variance)"
            warnings.warn(f"Random effects covariance is {what}", SingularMatrixWarning, stacklevel=3)
        params.fe_params = fe_params
        scale = self.get_scale(fe_params, params.cov_re, params.vcomp)
        cov_re, vcomp = scale * params.cov_re, scale * params.vcomp
        if (self.k_re > 0 and np.min(np.abs(np.diag(cov_re))) < 0.01) or \
                (self.k_vc > 0 and np.min(np.abs(vcomp)) < 0.01):
            warnings.warn("The MLE may be on the boundary of the parameter space.", ConvergenceWarning,
                          stacklevel=3)
        hess, sing = self.hessian(params)
        if sing:
            warnings.warn(_WARN_COV_SING, SingularMatrixWarning, stacklevel=3)
        hess_diag = np.diag(hess)
        if free is not None:
            pcov = np.zeros_like(hess)
            ii = np.flatnonzero(free.get_packed(use_sqrt=False, has_fe=True))
            hess_diag = hess_diag[ii]
            if len(ii):
                pcov[np.ix_(ii, ii)] = np.linalg.inv(-hess[np.ix_(ii, ii)])
        else:
            pcov = np.linalg.inv(-hess)
        if np.any(hess_diag >= 0):
            warnings.warn("The Hessian matrix at the estimated parameter values is not positive definite.",
                          ConvergenceWarning, stacklevel=3)
        res = MixedLMResults(self, params.get_packed(use_sqrt=False, has_fe=True), pcov / scale)
        res.params_object, res.fe_params, res.cov_re, res.vcomp, res.scale = params, fe_params, cov_re, vcomp, scale
        res.cov_re_unscaled = params.cov_re
        res.method = "REML" if self.reml else "ML"
        res.converged, res.hist, res.reml, res.cov_pen = converged, hist, self.reml, self.cov_pen
        res.k_fe, res.k_re, res.k_re2, res.k_vc = self.k_fe, self.k_re, self.k_re2, self.k_vc
        res.use_sqrt, res.freepat = self.use_sqrt, free
        res._theta = np.asarray(theta, dtype=float)
        return MixedLMResultsWrapper(res)

    def fit_regularized(self, start_params=None, method="l1", alpha=0, ceps=1e-4, ptol=1e-6, maxit=200,
                        **fit_kwargs):
        """Fixed effects penalized, the covariance held at the unpenalized fit (statsmodels' algorithm).

        ``method="l1"``: cyclic coordinate descent ("shooting") on
        ½β'Mβ − β'm + Σ alpha_j |β_j| with M = X'V⁻¹X and m = X'V⁻¹y from the
        factor of the unpenalized fit (no pass over the rows). A statsmodels
        ``Penalty`` object: the penalized likelihood is maximized over the
        covariance parameters (``fit(fe_pen=...)``), as statsmodels does.
        """
        from .regularized import fit_l1

        if isinstance(method, str) and method.lower() != "l1":
            raise ValueError("Invalid regularization method")
        if isinstance(method, Penalty):
            method.alpha = alpha
            fit_kwargs.update({"fe_pen": method})
            return self.fit(**fit_kwargs)
        return fit_l1(self, alpha, ceps, ptol, maxit, fit_kwargs)

    # --- formulas --------------------------------------------------------------------
    @classmethod
    def from_formula(cls, formula, data, re_formula=None, vc_formula=None, subset=None, use_sparse=False,
                     missing="none", *args, **kwargs):
        """statsmodels' ``MixedLM.from_formula``; ``vc_formula`` evaluated once over all rows, sparse."""
        from .formula import model_inputs

        if "groups" not in kwargs:
            raise AttributeError("'groups' is a required keyword argument in MixedLM.from_formula")
        data, inputs = model_inputs(data, kwargs.pop("groups"), formula, re_formula, vc_formula, subset, missing,
                                    kwargs.get("eval_env"))
        kwargs.update(exog_re=inputs["exog_re"], groups=inputs["groups"], missing=inputs["missing"])
        if inputs["components"] is not None:
            kwargs["exog_vc"] = DataVCSpec(inputs["components"], None)
        kwargs.pop("eval_env", None)
        kwargs["eval_env"] = inputs["eval_env"]
        mod = super().from_formula(formula, data, *args, **kwargs)
        if isinstance(mod.exog_vc, DataVCSpec):
            mod.exog_vc._group_rows = lambda: mod._group_rows
        names, re_names, re_full = sm_mixed.MixedLM._make_param_names(mod, inputs["exog_re_names"])
        mod.data.param_names, mod.data.exog_re_names, mod.data.exog_re_names_full = names, re_names, re_full
        if vc_formula is not None:
            mod.data.vcomp_names = mod.exog_vc.names
        return mod


def _penalized(model: MixedLM, engine):
    """The engine's problem with statsmodels' penalties added to −2 log L (fe at their GLS values).

    The penalty depends on θ through β̂(θ) (and Ψ): its gradient is taken
    by central differences, the likelihood's stays analytic.
    """
    from ..driver import Problem

    layout = model._lmm.layout
    backend = model._lmm.backend

    def penalty(t):
        out = 0.0
        if model.fe_pen is not None:
            out += model.fe_pen.func(backend.solution(t).beta)
        if model.cov_pen is not None and model.k_re:
            T = layout.T(t)[0]
            cov_re = T @ T.T
            out += model.cov_pen.func(cov_re, np.linalg.pinv(cov_re))
        return 2.0 * out

    def gradient(t):
        g = engine.gradient(t).copy()
        for j in range(len(t)):
            h = 1e-6 * max(1.0, abs(t[j]))
            e = np.zeros(len(t))
            e[j] = h
            g[j] += (penalty(t + e) - penalty(t - e)) / (2 * h)
        return g

    return Problem(objective=lambda t: engine.objective(t) + penalty(t), lower=engine.lower, gradient=gradient,
                   canonical=engine.canonical)

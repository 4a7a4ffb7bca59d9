"""A drop-in for statsmodels' ``MixedLM``: same arguments, names and meanings.

The data become random-effect terms of sparselmm: the grouped random
effects (``exog_re``, one correlated block per group) and one scalar term
per variance component (``exog_vc``, one level per group and column). The
likelihood, its score and the fit then run on sparselmm's backends: dense
per-group blocks when the groups are independent, CHOLMOD when a single
group holds crossed variance components.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..design import ReTerm
from ..driver import Problem, optimize
from ..errors import ConvergenceWarning, DataError
from ..frame import ModelFrame
from ..lapack import fit_blas_threads
from ..memory import without_hugepage_advice
from ..model import LinearMixedModel
from .params import MixedLMParams, ThetaMap
from .results import MixedLMResults

_MISSING = ("none", "drop", "raise")
#: statsmodels' optimizer names → sparselmm's driver methods.
_METHODS = {"bfgs": "auto", "lbfgs": "auto", "l-bfgs-b": "lbfgs", "cg": "auto", "newton": "auto",
            "nm": "nelder-mead", "nelder-mead": "nelder-mead", "powell": "powell"}


class VCSpec:
    """Variance components: per component, per group, a matrix and its column names."""

    def __init__(self, names, colnames, mats):
        self.names, self.colnames, self.mats = list(names), colnames, mats


def _as_2d(a, name):
    if a is None:
        return None, None
    names = list(a.columns) if isinstance(a, pd.DataFrame) else ([a.name] if isinstance(a, pd.Series) and a.name else None)
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name} must be one or two dimensional", column=name)
    return arr, names


def _default_names(X: np.ndarray) -> list[str]:
    """statsmodels' names for array columns: x1, x2, ... and "const" for a constant column."""
    names, i = [], 0
    for k in range(X.shape[1]):
        if len(X) and np.all(X[:, k] == X[0, k]) and X[0, k] != 0:
            names.append("const")
        else:
            i += 1
            names.append(f"x{i}")
    return names


def _convert_vc(exog_vc: dict) -> VCSpec:
    """statsmodels' older dict format {name: {group: matrix}} → VCSpec (names sorted)."""
    groups = sorted(set().union(*(v.keys() for v in exog_vc.values())))
    names = sorted(exog_vc)
    colnames, mats = [], []
    for k in names:
        cn, ms = [], []
        for g in groups:
            m = exog_vc[k][g]
            cn.append(list(m.columns) if hasattr(m, "columns") else [str(j) for j in range(np.shape(m)[1])])
            ms.append(np.asarray(m, dtype=float))
        colnames.append(cn)
        mats.append(ms)
    return VCSpec(names, colnames, mats)


class MixedLM:
    """Linear mixed effects model, statsmodels' API (see ``statsmodels.regression.mixed_linear_model``).

    Parameters
    ----------
    endog : array_like
        Response.
    exog : array_like
        Fixed-effects covariates (n × k_fe).
    groups : array_like
        Group labels; groups are independent.
    exog_re : array_like, optional
        Covariates of the grouped random effects (n × k_re); by default a
        random intercept when there are no variance components.
    exog_vc : VCSpec or dict, optional
        Variance components: for each name and each group (sorted labels),
        a matrix whose columns are independent random coefficients with a
        common variance. Each row may have at most one non-zero entry per
        component and group (indicator and slope-by-level matrices).
    use_sqrt : bool
        Optimize over the Cholesky factor of Ψ (always true inside
        sparselmm; kept for the score's parameterization).
    missing : {"none", "drop", "raise"}
        Rows with missing values: keep (statsmodels' "none": the results
        are then NaN), drop, or raise.
    backend : {"auto", "dense", "blocked", "sparse"}
        sparselmm's solver choice (see :class:`sparselmm.LinearMixedModel`).
    max_memory : float, optional
        Bytes the solver's factor may take (default: the available memory);
        a larger model raises :class:`~sparselmm.errors.ModelSizeError` when
        first used, before any numeric work.
    """

    def __init__(self, endog, exog, groups, exog_re=None, exog_vc=None, use_sqrt=True, missing="none",
                 backend="auto", exog_names=None, exog_re_names=None, endog_name=None, max_memory=None):
        if missing not in _MISSING:
            raise ValueError(f"missing must be one of {_MISSING}, not {missing!r}")
        if isinstance(exog_vc, dict):
            exog_vc = _convert_vc(exog_vc)
        self.exog_vc = exog_vc if exog_vc is not None else VCSpec([], [], [])
        y = np.asarray(endog, dtype=float).ravel()
        X, xnames = _as_2d(exog, "exog")
        Zre, renames = _as_2d(exog_re, "exog_re")
        groups = np.asarray(groups)
        n = len(y)
        for name, a in (("exog", X), ("groups", groups), ("exog_re", Zre)):
            if a is not None and len(a) != n:
                raise DataError(f"{name} has {len(a)} rows, endog has {n}", column=name)
        self.endog_names = endog_name or (endog.name if isinstance(endog, pd.Series) and endog.name else "y")
        self.exog_names = exog_names or xnames or _default_names(X)
        # statsmodels returns pandas objects for pandas (or formula) input, arrays otherwise
        self.use_pandas = bool(exog_names or xnames or isinstance(endog, pd.Series))
        self._default_re = Zre is None and not self.exog_vc.names
        if self._default_re:  # a random intercept, named as statsmodels names it
            Zre, renames = np.ones((n, 1)), ["Group Var"]
        self.k_fe = X.shape[1]
        self.k_re = 0 if Zre is None else Zre.shape[1]
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.k_vc = len(self.exog_vc.names)
        self.exog_re_names = exog_re_names or renames or [f"x_re{k + 1}" for k in range(self.k_re)]
        self.group_labels = sorted(set(groups.tolist()))
        self.missing = missing
        self.use_sqrt = use_sqrt
        self._backend = backend
        self._max_memory = max_memory
        self.endog, self.exog, self.exog_re, self.groups = y, X, Zre, groups
        self.nobs = self.n_totobs = n
        self.n_groups = len(self.group_labels)
        self.reml = True
        self._map = ThetaMap(self.k_re, self.k_vc)
        self._models: dict[bool, LinearMixedModel] = {}

    # --- construction of sparselmm terms ---------------------------------------
    @property
    def param_names(self) -> list[str]:
        names = list(self.exog_names)
        if self._default_re:
            return names + ["Group Var"]
        r = self.exog_re_names
        for i in range(self.k_re):
            for j in range(i + 1):
                names.append(f"{r[i]} Var" if i == j else f"{r[j]} x {r[i]} Cov")
        return names + [f"{v} Var" for v in self.exog_vc.names]

    def _rows(self):
        """Rows used (all, or complete cases for missing='drop')."""
        parts = [self.endog[:, None], self.exog] + ([self.exog_re] if self.exog_re is not None else [])
        bad = np.isnan(np.hstack(parts)).any(axis=1) | pd.isna(self.groups)
        if bad.any() and self.missing == "drop":
            return ~bad
        if bad.any():  # "raise", and "none" (statsmodels' formulas refuse missing values too)
            raise DataError(f"{int(bad.sum())} rows have missing values in endog, exog, exog_re or groups "
                            f"(missing={self.missing!r}); use missing='drop' to drop them")
        return np.ones(len(self.endog), dtype=bool)

    def _terms(self, keep: np.ndarray) -> list[ReTerm]:
        all_codes = pd.Index(self.group_labels).get_indexer(self.groups)
        gcodes = all_codes[keep].astype(np.int64)
        terms = []
        if self.k_re:
            terms.append(ReTerm("Group", tuple(self.exog_re_names), pd.Index(self.group_labels), gcodes,
                                np.ascontiguousarray(self.exog_re[keep]), diagonal=False))
        if self.k_vc:  # rows of each group, in row order
            order = np.argsort(all_codes, kind="stable")
            bounds = np.searchsorted(all_codes[order], np.arange(self.n_groups + 1))
            rows_of = {g: order[bounds[i]:bounds[i + 1]] for i, g in enumerate(self.group_labels)}
        kept_pos = np.cumsum(keep) - 1
        for j, name in enumerate(self.exog_vc.names):
            n_kept = int(keep.sum())
            codes = np.zeros(n_kept, dtype=np.int64)
            X = np.zeros((n_kept, 1))
            labels: list[tuple] = []
            for gi, g in enumerate(self.group_labels):
                mat = np.asarray(self.exog_vc.mats[j][gi], dtype=float)
                rows = rows_of[g]
                if mat.shape[0] != len(rows):
                    raise DataError(f"variance component {name!r}: group {g!r} has {len(rows)} rows "
                                    f"but its matrix has {mat.shape[0]}", column=name)
                sel = keep[rows]
                mat, rows = mat[sel], kept_pos[rows[sel]]
                nz = mat != 0
                if np.any(nz.sum(axis=1) > 1):
                    raise DataError(f"variance component {name!r}: a row of group {g!r} has several non-zero "
                                    "columns; sparselmm needs at most one per row", column=name)
                col = np.argmax(nz, axis=1)
                base = len(labels)
                labels += [(g, c) for c in self.exog_vc.colnames[j][gi]]
                codes[rows] = base + col
                X[rows, 0] = mat[np.arange(len(rows)), col]
            terms.append(ReTerm(name, (name,), pd.Index(labels), codes, X, diagonal=True))
        return terms, gcodes

    def _model(self, reml: bool) -> LinearMixedModel:
        """The sparselmm model (crossproducts and backend), built once per criterion."""
        if reml not in self._models:
            keep = self._rows()
            terms, gcodes = self._terms(keep)
            frame = ModelFrame(formula=None, y=self.endog[keep], X=self.exog[keep], fe_names=list(self.exog_names),
                               terms=terms, fixed_spec=None, term_specs=[], row_index=pd.RangeIndex(len(keep))[keep])
            self._models[reml] = LinearMixedModel.from_frame(frame, reml=reml, backend=self._backend,
                                                             group_codes=gcodes, max_memory=self._max_memory)
        return self._models[reml]

    @property
    def _lmm(self) -> LinearMixedModel:
        return self._model(self.reml)

    # --- formulas --------------------------------------------------------------
    @classmethod
    def from_formula(cls, formula, data, re_formula=None, vc_formula=None, subset=None, use_sparse=False,
                     missing="none", *args, **kwargs) -> MixedLM:
        """statsmodels' ``MixedLM.from_formula`` (``groups`` is a column name or an array)."""
        from .formula import model_inputs

        if "groups" not in kwargs:
            raise TypeError("'groups' is a required keyword argument in MixedLM.from_formula")
        if subset is not None:
            data = data.loc[subset]
        inputs = model_inputs(formula, data, kwargs.pop("groups"), re_formula, vc_formula, missing)
        unknown = set(kwargs) - {"backend", "use_sqrt", "max_memory"}
        if unknown:
            raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
        return cls(missing="none" if missing == "drop" else missing, backend=kwargs.get("backend", "auto"),
                   use_sqrt=kwargs.get("use_sqrt", True), max_memory=kwargs.get("max_memory"), **inputs)

    # --- likelihood ----------------------------------------------------------
    def _params(self, params, has_fe: bool) -> MixedLMParams:
        if isinstance(params, MixedLMParams):
            return params
        return MixedLMParams.from_packed(params, self.k_fe, self.k_re, self.use_sqrt, has_fe=has_fe)

    def _theta(self, params, pa: MixedLMParams) -> np.ndarray:
        """θ for the parameters: packed square-root parameters are θ itself, whatever their signs."""
        if self.use_sqrt and not isinstance(params, MixedLMParams):
            k = self.k_re2 + self.k_vc
            return self._map.theta_from_sqrt(np.asarray(params, dtype=float)[len(params) - k:])
        return self._map.theta_from_params(pa)

    def loglike(self, params, profile_fe=True) -> float:
        """(Restricted) log-likelihood with the scale profiled out (statsmodels' ``loglike``)."""
        pa = self._params(params, has_fe=False)
        theta = self._theta(params, pa)
        backend = self._lmm.backend
        if profile_fe:
            return -0.5 * backend.objective(theta)
        return -0.5 * backend.objective_at(theta, pa.fe_params)

    def score(self, params, profile_fe=True) -> np.ndarray:
        """Gradient of :meth:`loglike` in the model's parameterization (``use_sqrt``)."""
        pa = self._params(params, has_fe=False)
        return self._score(pa, self._theta(params, pa), profile_fe, self.use_sqrt)

    def score_sqrt(self, params, calc_fe=True):
        """(score_fe, score_re, score_vc) with respect to the Cholesky factor and √vcomp."""
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

    def _score(self, pa: MixedLMParams, theta: np.ndarray, profile_fe: bool, sqrt: bool,
               with_fe: bool | None = None) -> np.ndarray:
        with_fe = not profile_fe if with_fe is None else with_fe
        backend = self._lmm.backend
        beta = None if profile_fe else pa.fe_params
        g_theta = -0.5 * backend.gradient(theta, beta)
        if sqrt:
            g = self._map.sqrt_from_theta(g_theta)
        else:
            # ∂ℓ/∂θ = J' ∂ℓ/∂ψ  ⇒  ∂ℓ/∂ψ = J'⁻¹ ∂ℓ/∂θ (J is square, invertible off the boundary)
            g = np.linalg.solve(self._map.user_jacobian(theta).T, g_theta)
        if not with_fe:
            return g
        g_fe = np.zeros(self.k_fe) if beta is None else -0.5 * backend.objective_gradient_beta(theta, beta)
        return np.concatenate([g_fe, g])

    def hessian(self, params):
        """Hessian of the log-likelihood in (fe_params, lower(Ψ), vcomp); returns ``(hess, sing)``.

        Richardson-extrapolated central differences of the analytic score
        (the dimension is small; error O(h⁴)).
        """
        pa = self._params(params, has_fe=True)
        x0 = pa.get_packed(use_sqrt=False, has_fe=True)

        def grad(x):
            p = MixedLMParams.from_packed(x, self.k_fe, self.k_re, use_sqrt=False, has_fe=True)
            return self._score(p, self._map.theta_from_params(p), profile_fe=False, sqrt=False, with_fe=True)

        k = len(x0)
        H = np.zeros((k, k))
        for i in range(k):
            e = np.zeros(k)
            e[i] = 1e-4 * max(1.0, abs(x0[i]))
            d1 = (grad(x0 + e) - grad(x0 - e)) / (2 * e[i])
            d2 = (grad(x0 + e / 2) - grad(x0 - e / 2)) / e[i]
            H[:, i] = (4 * d2 - d1) / 3
        H = (H + H.T) / 2
        sing = bool(self.k_re and np.linalg.matrix_rank(pa.cov_re) < self.k_re)
        return H, sing

    def get_fe_params(self, cov_re, vcomp, tol=1e-10):
        """GLS fixed effects at (Ψ, vcomp); returns ``(fe_params, singular)``."""
        pa = MixedLMParams.from_components(np.zeros(self.k_fe), cov_re, vcomp=vcomp)
        sol = self._lmm.backend.solution(self._map.theta_from_params(pa))
        return sol.beta, bool(np.abs(np.diag(sol.RX)).min(initial=np.inf) < tol)

    def get_scale(self, fe_params, cov_re, vcomp) -> float:
        """Residual variance estimate at the given fixed effects and (Ψ, vcomp)."""
        pa = MixedLMParams.from_components(np.zeros(self.k_fe), cov_re, vcomp=vcomp)
        theta = self._map.theta_from_params(pa)
        backend = self._lmm.backend
        n, p = backend.cp.n, backend.p
        return backend.weighted_rss(theta, np.asarray(fe_params, dtype=float)) / (n - p if self.reml else n)

    def predict(self, params, exog=None) -> np.ndarray:
        """Fixed-effects prediction X β (statsmodels' ``predict``)."""
        exog = self.exog if exog is None else np.asarray(exog, dtype=float)
        fe = params.fe_params if isinstance(params, MixedLMParams) else np.asarray(params)[:self.k_fe]
        return exog @ fe

    # --- fitting -------------------------------------------------------------
    def fit(self, start_params=None, reml=True, niter_sa=0, do_cg=True, fe_pen=None, cov_pen=None, free=None,
            full_output=False, method=None, **fit_kwargs) -> MixedLMResults:
        """Fit by REML (default) or ML; statsmodels' ``MixedLM.fit`` arguments.

        ``free`` (a MixedLMParams of 0/1) holds the square-root parameters
        marked 0 at their start values, as statsmodels does with
        ``use_sqrt``. Penalties (``fe_pen``, ``cov_pen``) are not supported.
        """
        if fe_pen is not None or cov_pen is not None:
            raise NotImplementedError("sparselmm's MixedLM does not support fe_pen or cov_pen")
        self.reml = reml
        model = self._lmm
        if start_params is None:
            pa = MixedLMParams(self.k_fe, self.k_re, self.k_vc)
        elif isinstance(start_params, MixedLMParams):
            pa = start_params
        elif len(start_params) == self.k_fe + self.k_re2 + self.k_vc:
            pa = MixedLMParams.from_packed(start_params, self.k_fe, self.k_re, self.use_sqrt, has_fe=True)
        elif len(start_params) == self.k_re2 + self.k_vc:
            pa = MixedLMParams.from_packed(start_params, self.k_fe, self.k_re, self.use_sqrt, has_fe=False)
        else:
            raise ValueError("invalid start_params")
        theta0 = self._map.theta_from_params(pa)
        mask = np.ones(len(theta0), dtype=bool)
        if free is not None:
            mask = self._map.theta_from_sqrt(free.get_packed(use_sqrt=False, has_fe=False)) != 0
        if isinstance(method, (list, tuple)):
            method = method[0]
        driver_method = _METHODS.get(str(method).lower(), "auto") if method is not None else "auto"
        lower = model.lower  # a factor's diagonal ≥ 0: statsmodels' signs are free, same Ψ
        hist = [] if full_output else None
        if do_cg:
            fixed = theta0.copy()

            def embed(t):
                full = fixed.copy()
                full[mask] = t
                return full

            def fun(t):
                return model.objective(embed(t))

            def grad(t):
                return model.backend.gradient(embed(t))[mask]

            if mask.all():
                problem = model.problem()
            else:  # EM, the model's Hessian and sign flips cannot hold entries fixed
                problem = Problem(fun, lower[mask], grad)
            with fit_blas_threads(model.backend.blas_threads), without_hugepage_advice():
                opt = optimize(problem, theta0[mask], method=driver_method)
            theta = embed(opt.theta)
            converged, message = opt.converged, opt.message
            if hist is not None:
                hist.extend({"params": self._map.sqrt_from_theta(embed(t)), "objective": f} for t, f in opt.path)
            if not converged:
                warnings.warn(f"MixedLM optimization failed: {message}", ConvergenceWarning, stacklevel=2)
        else:
            theta, converged, message = theta0, False, "no optimization (do_cg=False)"
        return MixedLMResults.from_fit(self, theta, converged, message, hist, free)

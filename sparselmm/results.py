"""Results of an lme4-style fit: estimates, variance components, modes.

Names follow lme4: ``fe_params`` is ``fixef``, ``varcorr`` is
``as.data.frame(VarCorr(m))``, ``random_effects`` is ``ranef`` with
``random_effects_sd`` the square roots of its ``condVar`` diagonals,
``objective`` is ``deviance`` (ML) or ``REMLcrit`` (REML).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .frame import random_term

if TYPE_CHECKING:
    from .driver import OptSummary
    from .model import LinearMixedModel

SINGULAR_TOL = 1e-4  # lme4's isSingular() tolerance


def _write_parquet(path, frames, columns: list[str]) -> int:
    """Float ``columns`` of each frame appended to one Parquet file (a row group each); the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.float64()) for c in columns])
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for frame in frames:
            writer.write_table(pa.Table.from_pandas(frame[columns], schema=schema, preserve_index=False))
            rows += len(frame)
    return rows


#: Residuals of a model read in pieces whose quartiles the summary takes from all rows (beyond: every
#: k-th row, 80 MB at most).
QUANTILE_ROWS = 10_000_000


class LMMResults:
    """The fitted model (see the module docstring for the names)."""

    def __init__(self, model: LinearMixedModel, opt: OptSummary, fit_seconds: float):
        self.model = model
        self.optinfo = opt
        self.fit_seconds = fit_seconds
        self._sol = model.backend.solution(opt.theta)
        #: Numeric factorizations of A(θ) during the fit (objective, gradient and EM share them);
        #: inference after the fit does not count.
        self.nfactor: int = model.backend.nfactor

    # --- the optimization --------------------------------------------------
    @property
    def nfev(self) -> int:
        """Objective evaluations used by the optimizer."""
        return self.optinfo.nfev

    @property
    def ngrad(self) -> int:
        """Gradient evaluations used by the optimizer."""
        return self.optinfo.ngrad

    @property
    def converged(self) -> bool:
        return self.optinfo.converged

    @property
    def message(self) -> str:
        return self.optinfo.message

    @property
    def singular(self) -> bool:
        """θ on (within 1e-4 of) a bound: lme4's ``isSingular``."""
        lower = self.model.lower
        return bool(np.any(self.theta.to_numpy()[lower == 0] < SINGULAR_TOL))

    # --- estimates ---------------------------------------------------------
    @property
    def reml(self) -> bool:
        return self.model.reml

    @property
    def objective(self) -> float:
        return self._sol.objective

    @property
    def theta(self) -> pd.Series:
        return pd.Series(self._sol.theta, index=self.model.layout.theta_names, name="theta")

    @property
    def nobs(self) -> int:
        return self.model.frame.n

    @property
    def scale(self) -> float:
        """Residual variance σ̂²."""
        return self._sol.sigma2

    @property
    def sigma(self) -> float:
        return float(np.sqrt(self._sol.sigma2))

    @property
    def fe_params(self) -> pd.Series:
        return pd.Series(self._sol.beta, index=self.model.frame.fe_names, name="fe_params")

    @cached_property
    def cov_fe(self) -> pd.DataFrame:
        """σ̂² (RX'RX)⁻¹."""
        from scipy.linalg import solve_triangular

        RX = self._sol.RX
        Rinv = solve_triangular(RX, np.eye(RX.shape[0]))
        names = self.model.frame.fe_names
        return pd.DataFrame(self.scale * Rinv @ Rinv.T, index=names, columns=names)

    @property
    def bse_fe(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_fe)), index=self.model.frame.fe_names, name="bse_fe")

    @property
    def df_modelwise(self) -> int:
        """Parameters counted by AIC/BIC: fixed effects, θ, σ."""
        return len(self._sol.beta) + len(self._sol.theta) + 1

    @property
    def llf(self) -> float:
        """Log-likelihood (the REML log-likelihood for REML fits, as lme4)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2.0 * self.df_modelwise

    @property
    def bic(self) -> float:
        return self.objective + np.log(self.nobs) * self.df_modelwise

    # --- variance components -----------------------------------------------
    def cov_re(self) -> list[np.ndarray]:
        """Per term, the covariance σ̂² T_k T_k' of its random effects."""
        return [self.scale * T @ T.T for T in self.model.layout.T(self._sol.theta)]

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))``: variances, then correlations."""
        rows = []
        seen: dict[str, int] = {}
        for term, S in zip(self.model.layout.terms, self.cov_re()):
            k = seen.get(term.group, 0)
            seen[term.group] = k + 1
            grp = term.group if k == 0 else f"{term.group}.{k}"
            sd = np.sqrt(np.diag(S))
            for i, name in enumerate(term.columns):
                rows.append((grp, name, None, S[i, i], sd[i]))
            if not term.diagonal:
                for i in range(term.p):
                    for j in range(i + 1, term.p):
                        corr = S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan
                        rows.append((grp, term.columns[i], term.columns[j], S[i, j], corr))
        rows.append(("Residual", None, None, self.scale, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    # --- random effects ----------------------------------------------------
    def _by_group(self, per_term: list[np.ndarray]) -> dict[str, pd.DataFrame]:
        """Per grouping factor, a DataFrame (levels × columns of all its terms)."""
        out: dict[str, pd.DataFrame] = {}
        for term, values in zip(self.model.layout.terms, per_term):
            frame = pd.DataFrame(values, index=term.levels, columns=list(term.columns))
            out[term.group] = frame if term.group not in out else out[term.group].join(frame, how="outer")
        return out

    @cached_property
    def _b(self) -> list[np.ndarray]:
        layout = self.model.layout
        b = layout.lambda_times(self._sol.theta, self._sol.u)
        return [b[layout.col_offset[k]:layout.col_offset[k + 1]].reshape(t.nlevels, t.p)
                for k, t in enumerate(layout.terms)]

    @property
    def random_effects(self) -> dict[str, pd.DataFrame]:
        """Conditional modes b̂ per grouping factor (lme4's ``ranef``)."""
        return self._by_group(self._b)

    @cached_property
    def random_effects_cov(self) -> list[np.ndarray]:
        """Per term, the conditional covariance blocks σ̂² (Λ A⁻¹ Λ')_jj of each level."""
        return [self.scale * V for V in self.model.backend.cond_var(self._sol.theta)]

    @property
    def random_effects_sd(self) -> dict[str, pd.DataFrame]:
        """Conditional standard deviations of the random effects (lme4's ``condVar``)."""
        sds = [np.sqrt(np.einsum("lii->li", V)) for V in self.random_effects_cov]
        return self._by_group(sds)

    # --- fitted values and prediction ----------------------------------------
    def _predict(self, X: np.ndarray, terms) -> np.ndarray:
        eta = X @ self._sol.beta
        for (codes, Xk), b in zip(terms, self._b):
            known = codes >= 0
            eta[known] += np.einsum("ij,ij->i", Xk[known], b[codes[known]])
        return eta

    @cached_property
    def fittedvalues(self) -> pd.Series:
        """Conditional fitted values offset + X β̂ + Z b̂ (of a Dask DataFrame's rows: a lazy Dask Series)."""
        if self.model.stream is not None:
            return self._streamed("fitted")
        frame = self.model.frame
        eta = self._predict(frame.X, [(t.codes, t.X) for t in frame.terms])
        if frame.offset is not None:
            eta += frame.offset
        return pd.Series(eta, index=frame.row_index, name="fitted")

    @property
    def resid(self) -> pd.Series:
        """Residuals y − fitted (lme4's ``residuals(m)``, type ``"response"``)."""
        if self.model.stream is not None:
            return self._streamed("resid")
        frame = self.model.frame
        return pd.Series(frame.y - self.fittedvalues.to_numpy(), index=frame.row_index, name="resid")

    def residuals(self, type: str = "response", scaled: bool = False) -> pd.Series:
        """lme4's ``residuals(m, type, scaled)``: ``"response"`` y − fitted, or ``"pearson"``
        √w (y − fitted) with prior weights w (the same without); divided by σ̂ if ``scaled``."""
        if type not in ("response", "pearson"):
            raise ValueError(f"type must be 'response' or 'pearson', not {type!r}")
        r = self.resid
        sqrtw = self.model.frame.sqrtw
        if type == "pearson" and sqrtw is not None:
            r = r * sqrtw
        r = r / self.sigma if scaled else r
        return r.rename(type if not scaled else f"scaled {type}")

    def _streamed(self, column: str):
        """A column of :meth:`fitted_pieces` for a model read in pieces: lazy for a Dask DataFrame,
        refused for files and lists (it would hold every row at once)."""
        stream = self.model.stream
        if stream.source.kind != "dask":
            raise ValueError(f"this model was read in pieces ({stream.rows:,} rows): its {column} values are "
                             "not held in memory; use fitted_pieces() (a piece at a time) or "
                             "write_fitted(path) (a Parquet file)")
        return self._dask_fitted()[column]

    def _dask_fitted(self):
        """A Dask source's fitted values and residuals, a lazy Dask DataFrame (its tasks ship the
        encoder and the estimates, not the source)."""
        from .stream import fitted_piece

        encoder, beta, b = self.model.stream.encoder, self._sol.beta, self._b
        meta = pd.DataFrame({"fitted": pd.Series(dtype=float), "resid": pd.Series(dtype=float)})
        return self.model.stream.source.frame.map_partitions(lambda part: fitted_piece(encoder, part, beta, b),
                                                             meta=meta)

    @cached_property
    def scaled_residual_quantiles(self) -> pd.Series:
        """Min, quartiles and max of the Pearson residuals over σ̂ (lme4's summary). A model read in pieces
        reads them once more: min and max exact, the quartiles of every k-th row beyond
        :data:`QUANTILE_ROWS` rows."""
        if self.model.stream is None:
            r = self.residuals("pearson").to_numpy()
            low, high, sample = r.min(), r.max(), r
        else:
            step = max(1, -(-self.nobs // QUANTILE_ROWS))
            low, high, parts = np.inf, -np.inf, []
            for _, piece in self.fitted_pieces(pearson=True):
                r = piece["pearson"].to_numpy()
                low, high = min(low, r.min()), max(high, r.max())
                parts.append(r[::step].copy())
            sample = np.concatenate(parts)
        values = np.array([low, *np.quantile(sample, [0.25, 0.5, 0.75]), high]) / self.sigma
        return pd.Series(values, index=["Min", "1Q", "Median", "3Q", "Max"])

    def fitted_pieces(self, pearson: bool = False):
        """Fitted values and residuals a piece at a time: ``(name, DataFrame)`` with columns
        ``fitted`` and ``resid`` (and ``pearson``, √w times ``resid``, if asked), indexed as the piece's
        complete rows (a model fitted on one DataFrame gives one piece, ``"data"``)."""
        stream = self.model.stream
        if stream is None:
            out = pd.DataFrame({"fitted": self.fittedvalues, "resid": self.resid})
            if pearson:
                out["pearson"] = self.residuals("pearson")
            yield "data", out
            return
        from .stream import fitted_piece

        for name, piece in stream.source.pieces():
            yield name, fitted_piece(stream.encoder, piece, self._sol.beta, self._b, pearson)

    def predict_pieces(self, newdata):
        """:meth:`predict` a piece at a time on data too large for memory: ``newdata`` as ``fit``
        takes it (Parquet or CSV paths, a list of DataFrames, ...; a Dask DataFrame: its
        partitions in turn). Yields ``(name, Series)``; the response column is not needed."""
        from .frame import _variables
        from .sources import open_source

        parsed = self.model.frame.formula
        columns = [c for c in _variables(parsed) if c != parsed.response]
        for name, piece in open_source(newdata, columns).pieces():
            yield name, self.predict(piece)

    def write_fitted(self, path) -> int:
        """Write the fitted values and residuals (columns ``fitted``, ``resid``; in the order of the
        rows read, complete rows only) to the Parquet file ``path``, a piece at a time (a Dask
        DataFrame's: its ``to_parquet`` into the directory ``path``). Returns the rows written
        (None for Dask)."""
        stream = self.model.stream
        if stream is not None and stream.source.kind == "dask":
            self._dask_fitted().to_parquet(path, write_index=False)
            return None
        return _write_parquet(path, (piece for _, piece in self.fitted_pieces()), ["fitted", "resid"])

    def write_predictions(self, newdata, path) -> int:
        """Write :meth:`predict_pieces` of ``newdata`` (column ``predicted``, in the order of its rows)
        to the Parquet file ``path``, a piece at a time. Returns the rows written."""
        return _write_parquet(path, (p.to_frame() for _, p in self.predict_pieces(newdata)), ["predicted"])

    def predict(self, newdata: pd.DataFrame | None = None, offset=None) -> pd.Series:
        """Conditional predictions; levels not seen in the fit get the population prediction. The
        offset is included, as lme4's ``predict``: the formula's ``offset()`` terms evaluated on
        ``newdata``, and the fit's ``offset`` column read from it (``offset``: a column name or
        values for the new rows instead)."""
        if newdata is None:
            return self.fittedvalues
        frame = self.model.frame
        X = np.asarray(frame.fixed_spec.get_model_matrix(newdata, na_action="ignore"), dtype=float)
        terms = []
        for term, (spec, rt) in zip(frame.terms, frame.term_specs):
            new, _ = random_term(rt, newdata, spec)
            pos = term.levels.get_indexer(new.levels)
            codes = np.where(pos[new.codes] >= 0, pos[new.codes], -1)
            terms.append((codes, new.X))
        eta = self._predict(X, terms)
        new_offset = frame.new_offset(newdata, offset)
        if new_offset is not None:
            eta += new_offset
        return pd.Series(eta, index=newdata.index, name="predicted")

    # --- inference (sparselmm.inference) -------------------------------------
    def coef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Estimate, SE, df, t and p of each fixed effect (lmerTest's ``summary`` table).

        ``ddf``: ``"satterthwaite"`` (lmerTest), ``"kenward-roger"`` (pbkrtest; SEs from the adjusted
        covariance, REML fits), ``"residual"`` (n − p) or ``"asymptotic"`` (z tests).
        """
        from .inference.anova import coef_table

        return coef_table(self, ddf)

    def anova(self, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
        """F test of each fixed-effect term (lmerTest's ``anova(m, type, ddf)``): Sum Sq, Mean Sq,
        NumDF, DenDF, F value, Pr(>F). ``type`` 3 (default) or 1."""
        from .inference.anova import anova_table

        return anova_table(self, type, ddf)

    def contrast_test(self, L, ddf: str = "satterthwaite") -> pd.Series:
        """Test of H₀: Lβ = 0 for a contrast matrix L (rows × fixed effects), lmerTest's ``contest``:
        a t test for one row (estimate, SE, df, t, p), an F test for several (Sum Sq, Mean Sq, F, NumDF,
        DenDF, p)."""
        from .inference.ddf import ddf_method

        if isinstance(L, pd.DataFrame):
            L = L.reindex(columns=self.model.frame.fe_names).to_numpy()
        t = ddf_method(self, ddf).test(L)
        if t.estimate is not None:
            return pd.Series({"Estimate": t.estimate, "Std. Error": t.se, "df": t.den_df, "t value": t.t,
                              "Pr(>|t|)": t.p})
        ms = (t.F if t.F_unscaled is None else t.F_unscaled) * self.scale
        return pd.Series({"Sum Sq": ms * t.num_df, "Mean Sq": ms, "F value": t.F, "NumDF": t.num_df,
                          "DenDF": t.den_df, "Pr(>F)": t.p})

    def emmeans(self, specs, by=None, at: dict | None = None, ddf: str = "kenward-roger",
                level: float = 0.95) -> pd.DataFrame:
        """Estimated marginal means (R's ``emmeans(m, specs, by, at)``): ``specs`` a variable, a list,
        or a formula such as ``"~ a | b"``; numeric covariates at their means (``at`` sets values),
        the other factors averaged with equal weights. Columns: the specs and by variables,
        ``emmean``, ``SE``, ``df``, the confidence limits. ``ddf``: ``"kenward-roger"`` (emmeans'
        default for lmer), ``"satterthwaite"`` or ``"asymptotic"``. See
        :mod:`sparselmm.inference.emmeans`."""
        from .inference.emmeans import emmeans_table, marginal_means

        return emmeans_table(marginal_means(self, specs, by, at, ddf), level)

    def contrast(self, specs, method="pairwise", by=None, at: dict | None = None, adjust: str | None = None,
                 ref: int = 0, ddf: str = "kenward-roger", confint: bool = False, level: float = 0.95) -> pd.DataFrame:
        """Contrasts of the marginal means (R's ``contrast(emmeans(m, specs), method, adjust)``) within
        each ``by`` group: ``method`` ``"pairwise"``, ``"revpairwise"``, ``"trt.vs.ctrl"`` (against
        level ``ref``), ``"eff"``, or a dict name → coefficients. Columns ``contrast``, the by
        variables, ``estimate``, ``SE``, ``df``, ``t.ratio``, ``p.value`` (adjusted as ``adjust``; by
        default as emmeans: Tukey, dunnettx, fdr or none) and with ``confint`` the limits."""
        from .inference.emmeans import contrast_table, marginal_means

        return contrast_table(marginal_means(self, specs, by, at, ddf), method, adjust, ref, confint, level)

    def pairs(self, specs, by=None, at: dict | None = None, adjust: str = "tukey", ddf: str = "kenward-roger",
              reverse: bool = False, confint: bool = False, level: float = 0.95) -> pd.DataFrame:
        """All pairwise differences of the marginal means (R's ``pairs(emmeans(m, specs))``), labels as
        emmeans writes them (``"ctl - highdose"``); ``adjust`` ``"tukey"`` (default), ``"holm"``,
        ``"bonferroni"``, ``"none"``, ... (see :meth:`contrast`)."""
        return self.contrast(specs, "revpairwise" if reverse else "pairwise", by, at, adjust, 0, ddf, confint, level)

    def ranova(self, reduce_terms: bool = True) -> pd.DataFrame:
        """Likelihood-ratio test of each random term, reduced as lmerTest's ``ranova`` reduces them
        (``(1 + x | g)``, ``(x | g)``, ``(0 + f | g)`` to ``(1 | g)``; only ``(1 | g)`` is removed), or
        each removed whole (``reduce_terms=False``)."""
        from .inference.lrt import ranova

        return ranova(self, reduce_terms)

    def drop1(self) -> pd.DataFrame:
        """Likelihood-ratio test of each fixed term not contained in another, ML fits
        (lme4's ``drop1(m, test = "Chisq")``)."""
        from .inference.lrt import drop1

        return drop1(self)

    def confint(self, parm=None, level: float = 0.95, method: str = "wald", **kwargs) -> pd.DataFrame:
        """Confidence intervals with lme4's names (``oldNames = FALSE``).

        ``method="wald"``: fixed effects, β̂ ± z·SE (lme4 gives no Wald interval for variance
        parameters). ``"profile"``: every parameter, the exact roots of the ML profile
        ζ(x) = ±z (:meth:`profile`). ``"boot"``: percentile intervals of a parametric bootstrap
        (:meth:`bootstrap`; ``kwargs`` go to it: ``n``, ``seed``, ``n_jobs``).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), not {level!r}")
        if method == "wald":
            from .inference import interval_columns
            from .inference.distributions import norm_ppf

            z = norm_ppf(0.5 + level / 2)
            fe, se = self.fe_params, self.bse_fe
            lower, upper = interval_columns(level)
            out = pd.DataFrame({lower: fe - z * se, upper: fe + z * se})
            return out if parm is None else out.loc[list(parm)]
        if method == "profile":
            return self._profiler().confint(level, parm)
        if method == "boot":
            return self.bootstrap(**kwargs).confint(level, parm)
        raise ValueError(f"method must be 'wald', 'profile' or 'boot', not {method!r}")

    def _profiler(self):
        from .inference.profile import Profiler

        if "_profiler_cache" not in self.__dict__:
            self._profiler_cache = Profiler(self)
        return self._profiler_cache

    def profile(self, parm=None, npoints: int = 8) -> pd.DataFrame:
        """ζ traces of the ML profile (lme4's ``profile()``): columns ``parameter``, ``value``,
        ``zeta``, from ζ = −ζ_max to ζ_max (lme4's ``alphamax = 0.01``), ``npoints`` each side."""
        return self._profiler().traces(parm, npoints)

    def simulate(self, n: int = 1, seed=None) -> np.ndarray:
        """``n`` responses simulated from the fitted model, one column each (lme4's ``simulate``)."""
        from .inference.bootstrap import simulate

        return simulate(self, n, seed)

    def bootstrap(self, n: int = 1000, seed=None, n_jobs: int = 1, statistic=None, statistic_names=None,
                  progress: bool | None = None):
        """Parametric bootstrap (lme4's ``bootMer``): ``n`` refits to simulated responses, warm-started,
        on the fit's own design; see :func:`sparselmm.inference.bootstrap.bootstrap`. Returns a
        :class:`~sparselmm.inference.bootstrap.BootstrapResult` (``replicates``, ``se``, ``confint``)."""
        from .inference.bootstrap import bootstrap

        return bootstrap(self, n, seed, n_jobs, statistic, statistic_names, progress)

    # --- reporting (sparselmm.report) ---------------------------------------
    def summary(self, ddf: str | None = "satterthwaite"):
        """lmerTest's ``summary()``: a :class:`~sparselmm.report.Summary` (prints as text, shows as
        HTML in notebooks) whose fixed-effect table has ``ddf`` df and p-values (``None``: lme4's
        table, estimate, SE and t only)."""
        from .report import Summary

        return Summary(self, ddf)

    def to_dict(self, ddf: str | None = "satterthwaite", anova: bool = True, confint: str | None = "wald",
                level: float = 0.95, ranova: bool = False, **bootstrap) -> dict:
        """Everything as plain values for JSON: the fit (criterion, AIC, BIC, convergence), β, θ, σ,
        VarCorr, the covariance of β, the coefficient table and type 3 anova with ``ddf``, intervals
        by ``confint`` (``"wald"``, ``"profile"``, ``"boot"``; ``bootstrap`` keywords go to
        :meth:`bootstrap`) and, with ``ranova=True``, the tests of the random terms."""
        from .report import to_dict

        return to_dict(self, ddf, anova, confint, level, ranova, **bootstrap)

    def to_json(self, path=None, **kwargs) -> str:
        """:meth:`to_dict` as JSON text (written to ``path`` when given)."""
        from .report import to_json

        return to_json(self, path, **kwargs)

    def __repr__(self) -> str:
        return str(self.summary(ddf=None))

    def _repr_html_(self) -> str:
        return self.summary(ddf=None).as_html()

"""statsmodels' ``MixedLMResults``, with what needs the data computed by the engine.

The class is statsmodels' own results class (``summary``, ``t_test``,
``f_test``, ``wald_test``, ``bse_fe``, ``bse_re``, ``aic``, ``bic``,
``profile_re``, ``remove_data``, the pandas wrapper); the conditional
modes and variances, fitted values and residuals come from sparselmm's
factor at the fitted θ instead of statsmodels' per-group solves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.regression import mixed_linear_model as sm_mixed
from statsmodels.regression.mixed_linear_model import MixedLMResultsWrapper
from statsmodels.tools._decorators import cache_readonly

__all__ = ["MixedLMResults", "MixedLMResultsWrapper"]


class MixedLMResults(sm_mixed.MixedLMResults):
    """Results of :meth:`sparselmm.MixedLM.fit` (statsmodels' class and names)."""

    @property
    def _engine(self):
        return self.model._engine(self.reml)

    @cache_readonly
    def _b(self) -> np.ndarray:
        """Conditional modes b = Λû of every column of Z at the results' θ and fixed effects."""
        model, backend = self.model, self._engine.backend
        theta = model._engine_theta(self._theta)
        u = backend.spherical_at(theta, np.asarray(self.fe_params, dtype=float))
        return self._engine.layout.lambda_times(theta, u)

    @cache_readonly
    def llf(self):
        model, reml = self.model, self.model.reml
        model.reml = self.reml  # the criterion of this fit, whatever the model was fitted with since
        try:
            return model.loglike(self.params_object, profile_fe=False)
        finally:
            model.reml = reml

    @cache_readonly
    def fittedvalues(self):
        """X β̂ + Z b̂: the fixed effects and the predicted random effects."""
        fit = np.dot(self.model.exog, np.asarray(self.fe_params, dtype=float))
        layout, b = self._engine.layout, self._b
        for k, term in enumerate(layout.terms):
            bk = b[layout.col_offset[k]:layout.col_offset[k + 1]].reshape(term.nlevels, term.p)
            fit += np.einsum("ij,ij->i", term.X, bk[term.codes])
        return fit

    def _group_columns(self):
        """For each group (in ``group_labels`` order), the columns of Z of its random effects:
        ``exog_re``'s, then each component's levels in the group."""
        model = self.model
        design = model._design
        n = model.n_groups
        parts = []
        if self.k_re:
            parts.append(design.re_offset + np.arange(n * self.k_re).reshape(n, self.k_re))
        comps = []
        for comp, cols in zip(model._design_components, design.component_columns):
            bounds = np.searchsorted(comp.level_group, np.arange(n + 1))
            comps.append((cols, bounds))
        for g in range(n):
            pieces = [p[g] for p in parts] + [cols[bounds[g]:bounds[g + 1]] for cols, bounds in comps]
            yield np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64)

    @cache_readonly
    def random_effects(self):
        """The conditional means of each group's random effects given the data (a Series per group)."""
        b = self._b
        return {label: pd.Series(b[cols], index=self._expand_re_names(g))
                for g, (label, cols) in enumerate(zip(self.model.group_labels, self._group_columns()))}

    @cache_readonly
    def random_effects_cov(self):
        """The conditional covariance of each group's random effects given the data."""
        engine = self._engine
        theta = self.model._engine_theta(self._theta)
        Lam = engine.layout.lambda_matrix(theta).tocsr()
        out = {}
        for g, (label, cols) in enumerate(zip(self.model.group_labels, self._group_columns())):
            Ainv = engine.backend.inverse_columns(theta, cols)[cols]
            L = Lam[cols][:, cols].toarray()
            names = self._expand_re_names(g)
            out[label] = pd.DataFrame(self.scale * L @ Ainv @ L.T, index=names, columns=names)
        return out


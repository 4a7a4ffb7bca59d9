"""``MixedLM.get_distribution``: simulate the response, every group at once."""

from __future__ import annotations

import numpy as np
from statsmodels.tools.rng_qrng import check_random_state

from .params import MixedLMParams


class MixedLMDistribution:
    """The model's distribution at packed ``params`` (fixed effects, then Ψ and vcomp divided by ``scale``).

    ``rvs(n, rng)`` draws one response vector (``n`` is ignored, as in statsmodels).
    """

    def __init__(self, model, params, scale, exog):
        self.model = model
        self.exog = exog if exog is not None else model.exog
        po = MixedLMParams.from_packed(params, model.k_fe, model.k_re, False, True)
        self.fe_params = po.fe_params
        self.cov_re = scale * po.cov_re
        self.vcomp = scale * po.vcomp
        self.scale = scale

    def rvs(self, n=None, rng=None):
        model = self.model
        rng = check_random_state(rng)
        y = np.dot(self.exog, self.fe_params)
        codes = model._group_codes
        if model.k_re:
            u = rng.normal(size=(model.n_groups, model.k_re)) @ np.linalg.cholesky(self.cov_re).T
            y += (u[codes] * model.exog_re).sum(1)
        for comp, v in zip(model._design_components, self.vcomp):
            u = np.sqrt(v) * rng.normal(size=comp.nlevels)
            y += np.bincount(comp.rows, weights=comp.values * u[comp.levels], minlength=len(y))
        return y + np.sqrt(self.scale) * rng.normal(size=len(y))

"""asv: inference after the fit on lme4's InstEval (``y ~ 1 + service + (1|s) + (1|d) + (1|dept)``).

``InstEvalSatterthwaite.time_coef_table``   lmerTest's Satterthwaite coefficient table of the REML fit
                                            (the Hessian of the objective and the Jacobian of β's
                                            covariance, from scratch; the fit is made in setup)
``InstEvalSatterthwaite.track_ratio_to_fit`` that table's time over the REML fit's, both timed in one
                                            process (medians of 3): the floor is 1
``InstEvalProfile.time_confint_profile``    ``confint(method="profile")`` of the ML fit, every parameter
``InstEvalBootstrap.time_bootstrap``        1,000 parametric-bootstrap refits of the REML fit, 2 workers

lme4/lmerTest's times for the same work are in ``benchmarks/results/lme4_inference.json``
(``benchmarks/lme4_inference.R``); ``python -m benchmarks.compare_inference`` puts the two side by side.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import sparselmm

from ._common import OneSample, dataset, warm_jit

NBOOT = 1000


def _fit(reml: bool):
    formula, data = dataset("insteval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sparselmm.fit(formula, data, reml=reml)


def coef_table_from_scratch(result):
    """The Satterthwaite table without what an earlier call cached on the result."""
    result.__dict__.pop("_ddf_cache", None)
    return result.coef_table("satterthwaite")


def profile_from_scratch(result):
    result.__dict__.pop("_profiler_cache", None)
    return result.confint(method="profile")


class InstEvalSatterthwaite(OneSample):
    repeat = 3

    def setup(self):
        warm_jit()
        self.result = _fit(reml=True)
        coef_table_from_scratch(self.result)  # first use: imports

    def time_coef_table(self):
        coef_table_from_scratch(self.result)

    def track_ratio_to_fit(self):
        fit, table = [], []
        for _ in range(3):
            start = time.perf_counter()
            result = _fit(reml=True)
            fit.append(time.perf_counter() - start)
            start = time.perf_counter()
            coef_table_from_scratch(result)
            table.append(time.perf_counter() - start)
        return float(np.median(table) / np.median(fit))

    track_ratio_to_fit.unit = "Satterthwaite table / REML fit"


class InstEvalProfile(OneSample):
    def setup(self):
        warm_jit()
        self.result = _fit(reml=False)

    def time_confint_profile(self):
        profile_from_scratch(self.result)


class InstEvalBootstrap(OneSample):
    def setup(self):
        warm_jit()
        self.result = _fit(reml=True)

    def time_bootstrap(self):
        self.result.bootstrap(n=NBOOT, seed=1, n_jobs=2, progress=False)

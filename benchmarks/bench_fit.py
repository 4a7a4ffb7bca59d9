"""Full fits of lme4's InstEval: ``y ~ 1 + service + (1|s) + (1|d) + (1|dept)``.

73,421 ratings, 2,972 students crossed with 1,128 instructors and 14
departments: the standard large crossed design (lme4's own benchmark). Each
sample is one end-to-end :func:`sparselmm.fit` -- model frame, crossproducts,
the backend's setup, the optimizer's evaluations and the results -- by REML
and by ML (``reml`` parameter).

``time_fit``     wall time of the fit (one sample)
``peakmem_fit``  peak resident memory of the process through setup and the fit
``InstEvalChoice.time_choice``           the choice of backend alone (blocked or CHOLMOD:
                                         ``backends.blocked_or_sparse``), ML
``InstEvalChoice.track_share_of_fit``    that choice's time over the ML fit's, both in one process
                                         (medians of 5): at most 0.05
"""

from __future__ import annotations

import statistics
import time
import warnings

import sparselmm
from sparselmm.backends import blocked_or_sparse

from ._common import OneSample, dataset, warm_jit


class InstEvalFit(OneSample):
    params = [True, False]
    param_names = ["reml"]

    def setup(self, reml):
        self.formula, self.data = dataset("insteval")
        warm_jit()

    def _fit(self, reml):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sparselmm.fit(self.formula, self.data, reml=reml)

    def time_fit(self, reml):
        self._fit(reml)

    def peakmem_fit(self, reml):
        self._fit(reml)


class InstEvalChoice(OneSample):
    repeat = 5

    def setup(self):
        formula, data = dataset("insteval")
        warm_jit()
        self.fit = lambda: sparselmm.fit(formula, data, reml=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = self.fit().model
        self.layout, self.cp = model.layout, model.crossprod
        blocked_or_sparse(self.layout, self.cp, False)

    def time_choice(self):
        blocked_or_sparse(self.layout, self.cp, False)

    def track_share_of_fit(self):
        def median(work):
            times = []
            for _ in range(5):
                start = time.perf_counter()
                work()
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return median(lambda: blocked_or_sparse(self.layout, self.cp, False)) / median(self.fit)

    track_share_of_fit.unit = "ratio"

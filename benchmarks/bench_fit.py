"""Full fits of lme4's InstEval: ``y ~ 1 + service + (1|s) + (1|d) + (1|dept)``.

73,421 ratings, 2,972 students crossed with 1,128 instructors and 14
departments: the standard large crossed design (lme4's own benchmark). Each
sample is one end-to-end :func:`sparselmm.fit` -- model frame, crossproducts,
the backend's setup, the optimizer's evaluations and the results -- by REML
and by ML (``reml`` parameter).

``time_fit``     wall time of the fit (one sample)
``peakmem_fit``  peak resident memory of the process through setup and the fit
"""

from __future__ import annotations

import warnings

import sparselmm

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

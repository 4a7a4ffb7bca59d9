"""Full fits of simulated designs as n grows: 10⁴, 10⁵ and 10⁶ rows.

``CrossedFit``: :func:`sparselmm.datasets.simulate_crossed` fitted by
``y ~ x + treat + (1|student) + (1|item) + (1|dept)`` (n/50 students crossed
with n/500 items of skewed popularity, items in 20 departments): the
automatic backend choice (blocked: students eliminated in closed form, the
items and departments dense); the size of Z'Z and the dense block grow with n.

``NestedFit``: :func:`sparselmm.datasets.simulate_nested` fitted by
``y ~ time + (1 + time|subject)`` (n/10 subjects, correlated intercept and
slope): the automatic backend choice (dense per-subject blocks).

``time_fit`` is one end-to-end :func:`sparselmm.fit` (REML, the default
optimizer: EM, then quasi-Newton on the analytic gradient). After the
crossproducts no step of a fit touches the n rows, and the backend's storage
does not change with θ, so ``peakmem_model`` -- building the model and
evaluating the objective once -- reaches the memory peak of a fit without
paying for the optimization; it includes the data frame made in ``setup``.
"""

from __future__ import annotations

import warnings

import sparselmm
from sparselmm import LinearMixedModel

from ._common import SIZES, OneSample, dataset, warm_jit


class _SyntheticFit(OneSample):
    params = SIZES
    param_names = ["n"]
    kind = ""

    def setup(self, n):
        self.formula, self.data = dataset(f"{self.kind}_{n}")
        warm_jit()

    def time_fit(self, n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sparselmm.fit(self.formula, self.data)

    def peakmem_model(self, n):
        model = LinearMixedModel(self.formula, self.data)
        model.objective(model.theta0)


class CrossedFit(_SyntheticFit):
    kind = "crossed"


class NestedFit(_SyntheticFit):
    kind = "nested"

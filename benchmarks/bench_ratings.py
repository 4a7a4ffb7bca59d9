"""asv: MovieLens-shaped crossed designs (``datasets.simulate_ratings``), ``rating ~ 1 + (1|user) + (1|item)``,
ML, as in the MovieLens benchmarks of MixedModels.jl.

``time_fit``     wall time of one fit (model frame, crossproducts, setup, optimizer, results)
``peakmem_fit``  peak resident memory through it

Shapes: ``1M`` (6,040 users × 3,706 items; 3.5 s) and ``10M`` (69,878 × 10,677; 48 s, 3.5 GB),
measured once each. The side-by-side with lme4 on these shapes is not in ``benchmarks/compare.py``
yet.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import sparselmm
from sparselmm.datasets import RATINGS_FORMULA, RATINGS_SHAPES, simulate_ratings

from ._common import OneSample, warm_jit


@lru_cache(maxsize=1)
def _data(shape: str):
    return simulate_ratings(*RATINGS_SHAPES[shape], seed=0)


class RatingsFit(OneSample):
    params = ["1M", "10M"]
    param_names = ["shape"]

    def setup(self, shape):
        self.data = _data(shape)
        warm_jit()

    def _fit(self, shape):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sparselmm.fit(RATINGS_FORMULA, self.data, reml=False, progress=False)

    def time_fit(self, shape):
        self._fit(shape)

    def peakmem_fit(self, shape):
        self._fit(shape)

"""asv: MovieLens-shaped crossed designs (``datasets.simulate_ratings``), ``rating ~ 1 + (1|user) + (1|item)``,
ML, as in the MovieLens benchmarks of MixedModels.jl.

``RatingsFit.time_fit``       wall time of one fit (model frame, crossproducts, setup, optimizer, results)
``RatingsFit.peakmem_fit``    peak resident memory through it
``RatingsRefused.time_refuse``  the 25M shape: from the data to the size error (memory and time estimates)
``GpuRatingsFit.time_fit``    one fit with ``device="cuda"`` (10M and 25M; skipped without CuPy and a GPU)

Shapes: ``1M`` (6,040 users × 3,706 items) and ``10M`` (69,878 × 10,677), fitted; ``25M``
(162,541 × 59,047), refused on a machine with less than some 60 GiB. The side by side with lme4
on the same data is ``make bench-ratings`` (``benchmarks/compare.py --designs ratings``).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import sparselmm
from sparselmm.errors import ModelSizeError
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


class RatingsRefused(OneSample):
    """The 25M shape does not fit here: the refusal, with its estimates, before any factorization."""

    def setup(self):
        self.data = _data("25M")
        warm_jit()

    def time_refuse(self):
        try:
            sparselmm.fit(RATINGS_FORMULA, self.data, reml=False, progress=False)
        except ModelSizeError:
            return
        raise AssertionError("the 25M shape was fitted: this machine has the memory for it")


class GpuRatingsFit(OneSample):
    """A fit with the dense block on the GPU (``device="cuda"``); skipped where CuPy finds none.
    ``benchmarks/gpu_ratings.py`` reports the same fits per phase."""

    params = ["10M", "25M"]
    param_names = ["shape"]
    timeout = 1800

    def setup(self, shape):
        from sparselmm.backends.cuda import gpu_available

        if not gpu_available():
            raise NotImplementedError("no CUDA device")
        self.data = _data(shape)
        warm_jit()

    def time_fit(self, shape):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sparselmm.fit(RATINGS_FORMULA, self.data, reml=False, progress=False, device="cuda")

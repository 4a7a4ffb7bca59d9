"""asv: what a study reports after the fit, on lme4's InstEval (``y ~ 1 + service + (1|s) + (1|d) + (1|dept)``).

``InstEvalWeights.time_fit``              the ML fit, unweighted and with prior weights (a parameter)
``InstEvalWeightedRatio.track_weighted_ratio``  the weighted fit's time over the unweighted one's, both timed
                                          in one process (medians of 3): the floor is 1.2 at most
``InstEvalMeans.time_emmeans_pairs``      ``emmeans("service")`` + ``pairs("service")`` of the REML fit,
                                          Kenward–Roger and Satterthwaite df (a parameter), from scratch

emmeans' own times for the same work: ``python -m benchmarks.compare_study`` (runs
``benchmarks/lme4_study.R`` in the same run).
"""

from __future__ import annotations

import statistics
import time

from ._common import OneSample, dataset, warm_jit
from .compare_study import _fit, emmeans_and_pairs, insteval_weights


class InstEvalWeights(OneSample):
    params = [False, True]
    param_names = ["weighted"]

    def setup(self, weighted):
        warm_jit()
        _, data = dataset("insteval")
        self.weights = insteval_weights(len(data))
        _fit(self.weights if weighted else None)

    def time_fit(self, weighted):
        _fit(self.weights if weighted else None)


class InstEvalWeightedRatio(OneSample):
    def setup(self):
        warm_jit()
        _, data = dataset("insteval")
        self.weights = insteval_weights(len(data))
        _fit(self.weights), _fit()

    def track_weighted_ratio(self):
        def median(w):
            times = []
            for _ in range(3):
                start = time.perf_counter()
                _fit(w)
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        return median(self.weights) / median(None)

    track_weighted_ratio.unit = "ratio"


class InstEvalMeans(OneSample):
    params = ["kenward-roger", "satterthwaite"]
    param_names = ["ddf"]
    repeat = 3

    def setup(self, ddf):
        warm_jit()
        self.result = _fit(reml=True)
        emmeans_and_pairs(self.result, ddf)  # first use: imports

    def time_emmeans_pairs(self, ddf):
        emmeans_and_pairs(self.result, ddf)

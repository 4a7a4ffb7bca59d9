"""asv: start-up in fresh processes (``benchmarks/startup.py``; medians of 5 processes each).

``Import.track_over_pandas``         ``import sparselmm`` minus ``import pandas`` (floor: 0.2 s)
``FirstFit.track_first_minus_warm``  per backend, the first fit in a fresh process minus a warm fit of
                                     the same model in it (floor: 0.3 s)

The end-to-end comparison with ``Rscript`` is ``python -m benchmarks.startup --lme4``.
"""

from __future__ import annotations

from ._common import OneSample
from .startup import first_fits, imports

RUNS = 5


class Import(OneSample):
    def track_over_pandas(self):
        t = imports(RUNS)
        return t["sparselmm"] - t["pandas"]

    track_over_pandas.unit = "seconds"


class FirstFit(OneSample):
    params = ["dense", "blocked", "sparse"]
    param_names = ["backend"]

    def setup_cache(self):
        return first_fits(RUNS)

    def track_first_minus_warm(self, results, backend):
        return results[backend]["extra"]

    track_first_minus_warm.unit = "seconds"

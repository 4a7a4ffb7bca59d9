"""What a fit will cost on this machine, before it starts: the dense algebra's rate, measured once.

The blocked backend's iteration is dominated by LAPACK on the dense block of order m: a
factorization (``dpotrf``, m³/3 flops) and an inverse (``dpotri``, 2m³/3) per gradient.
:func:`dense_rate` times a ``dpotrf`` of order 1,024 with the system LAPACK on every core (once per
process, about 20 ms); :func:`dense_iteration_seconds` scales it. Larger orders run faster than
order 1,024, so the estimate errs long (MovieLens-10M's shape, m = 10,677: 15–23 s an iteration
measured).
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

#: Order of the timed factorization.
PROBE_ORDER = 1024


@lru_cache(maxsize=1)
def dense_rate() -> float:
    """Flops per second of the system LAPACK's Cholesky factorization here (the best of 3)."""
    from .lapack import cholesky, fit_blas_threads

    rng = np.random.default_rng(0)
    g = rng.standard_normal((PROBE_ORDER, PROBE_ORDER))
    a = np.asfortranarray(g @ g.T + PROBE_ORDER * np.eye(PROBE_ORDER))
    best = np.inf
    with fit_blas_threads(None):
        for _ in range(3):
            work = a.copy(order="F")
            start = time.perf_counter()
            cholesky(work)
            best = min(best, time.perf_counter() - start)
    return PROBE_ORDER ** 3 / 3 / best


def dense_iteration_seconds(m: int) -> float:
    """Seconds of an iteration's dense algebra on a block of order ``m``: factor and inverse."""
    return float(m) ** 3 / dense_rate()


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

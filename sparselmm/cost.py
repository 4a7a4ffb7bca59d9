"""What a fit will cost on this machine, before it starts: the dense algebra's rate, measured once.

The blocked backend's iteration is dominated by LAPACK on the dense block of order m: a
factorization (``dpotrf``, m³/3 flops) and an inverse (``dpotri``, 2m³/3) per gradient.
:func:`dense_rate` times a ``dpotrf`` of order 1,024 with the system LAPACK on every core (once per
process, about 20 ms), and every estimate scales it.

The automatic choice of backend (``backends.make_backend``) compares two estimates of an
iteration (a factorization and a gradient): :func:`blocked_iteration_seconds` (the dense algebra
and the passes over the pairs of rows of L21) and :func:`sparse_iteration_seconds` (CHOLMOD's
factor and the selected inversion, from the multiply-adds the sparse backend's symbolic analysis
counts). The constants below were fitted (least squares on log times) to
``python -m benchmarks.backend_costs``'s table of measured designs, which ``tests/test_cost.py``
checks the choice against; the pairs' cost was measured on MovieLens-10M's shape. The estimates
are good to some ±30 % from order 1,500 (a blocked iteration of MovieLens-10M's shape: 17 s
estimated, 19–21 s measured); CHOLMOD's small problems run slower than their count says.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

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


#: Seconds per pair of rows of one column of L21 (blocked backend): the Schur pass's multiply-add
#: and the gradient's pass reading S⁻¹, both bound by memory latency (two cores; MovieLens-10M's
#: shape, 1.8e9 pairs: 2.0 s and 3.0 s).
PAIR_SECONDS = 2.5e-9

#: Seconds per column of Z in every backend's iteration: the solves, the first term's blocks,
#: the gradient's per-level work and the Python around them.
COLUMN_SECONDS = 4e-6

#: The probe's rate (order 1,024, one factorization) understates a blocked iteration's dense
#: algebra (its inverse runs faster per flop, and larger orders do): it runs at this multiple.
LARGE_BLOCK_SPEEDUP = 2.5

#: The sparse backend's multiply-adds (factor Σ_j |L_j|² and Takahashi's selected inversion, in
#: ``backends.sparse``'s units) run at this multiple of the probe's rate.
SPARSE_SPEEDUP = 0.7


class Estimate(NamedTuple):
    """What a backend will take, from structure alone: ``bytes`` of its factor and work arrays,
    ``seconds`` an iteration (a factorization and a gradient) on this machine."""

    bytes: float
    seconds: float


def blocked_iteration_seconds(m: int, pairs: float, q: int, rate: float | None = None) -> float:
    """An iteration of the blocked backend: the dense block's factor and inverse (order ``m``), the
    passes over ``pairs`` pairs of rows of L21, and ``q`` columns' overhead; ``rate``: flops per
    second of the probe (:func:`dense_rate`)."""
    return float(m) ** 3 / ((rate or dense_rate()) * LARGE_BLOCK_SPEEDUP) + pairs * PAIR_SECONDS + q * COLUMN_SECONDS


def sparse_iteration_seconds(multiply_adds: float, q: int, rate: float | None = None) -> float:
    """An iteration of the sparse backend from its symbolic analysis's count (``SparseBackend.flops``)."""
    return multiply_adds / ((rate or dense_rate()) * SPARSE_SPEEDUP) + q * COLUMN_SECONDS


def groups_iteration_seconds(cubes: float, q: int, rate: float | None = None) -> float:
    """An iteration of the dense per-group backend: Σ_g n_g³ for groups of n_g columns (factor and
    inverse of each block), and ``q`` columns' overhead."""
    return cubes / (rate or dense_rate()) + q * COLUMN_SECONDS


#: A block after the first term this full fills in under any ordering: CHOLMOD's factor is as
#: dense as the blocked backend's, at a lower rate (no symbolic analysis needed to know it).
DENSE_SCHUR = 0.5

#: A dense block of at most this many flops (m³) costs less than CHOLMOD's analysis would save.
SMALL_BLOCK_FLOPS = 1e8


def prefer_blocked(m: int, pairs: float, density: float, q: int, sparse_multiply_adds: float | None = None,
                   rate: float | None = None, factor_fill: float | None = None) -> bool | None:
    """Whether the blocked backend is estimated to iterate faster than the sparse one.

    Parameters
    ----------
    m, pairs, density : the dense block's order, the pairs of rows of L21
        (``blocked.schur_pairs``) and the block's structural density (``blocked.schur_density``).
    q : the columns of Z.
    sparse_multiply_adds : float, optional
        The sparse backend's count (``SparseBackend.flops``); None if its analysis is not done.
    rate : float, optional
        The probe's flops per second; by default :func:`dense_rate` (measured only when needed).
    factor_fill : float, optional
        The density of the dense block's Cholesky factor (``blocked.schur_factor_fill``), if known:
        a block that fills in to half full or more is dense whatever CHOLMOD's ordering.

    Returns
    -------
    True or False; None when the answer needs ``sparse_multiply_adds`` (or ``factor_fill``).
    """
    if density >= DENSE_SCHUR or float(m) ** 3 <= SMALL_BLOCK_FLOPS:
        return True
    if factor_fill is not None and factor_fill >= DENSE_SCHUR:
        return True
    if sparse_multiply_adds is None:
        return None
    return blocked_iteration_seconds(m, pairs, q, rate) <= sparse_iteration_seconds(sparse_multiply_adds, q, rate)


def describe(estimate: Estimate, limit: float) -> str:
    """``about 1.4 GiB of the 22.0 GiB available; about 17 s an iteration on this machine (...)``."""
    memory = f"about {format_bytes(estimate.bytes)}"
    if np.isfinite(limit):
        memory += f" of the {format_bytes(limit)} allowed"
    if np.isnan(estimate.seconds):  # a GPU's: no rate measured there
        return memory
    return (f"{memory}; about {format_seconds(estimate.seconds)} an iteration on this machine "
            f"(dense Cholesky measured at {dense_rate() / 1e9:.0f} GFLOP/s)")


def format_bytes(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

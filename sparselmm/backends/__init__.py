"""Backends: θ in; objective, solution, gradient and conditional variances out.

``make_backend`` picks the dense per-group backend when the random effects
partition the rows into small independent groups; the blocked backend when
what is left after eliminating the first term is dense (crossed designs) and
small enough; CHOLMOD otherwise.
"""

from __future__ import annotations

import numpy as np

from ..crossprod import Crossprod
from ..design import Layout
from ..cost import dense_iteration_seconds, format_seconds
from ..memory import SPARSE_BYTES_PER_ENTRY, memory_limit, refuse
from .base import ProfiledBackend, Solution
from .blocked import BlockedBackend, dense_bytes, schur_density
from .dense import MAX_GROUP_SIZE, DenseBackend, nested_groups
from .sparse import SparseBackend

BACKENDS = ("auto", "dense", "blocked", "sparse")

#: "auto" takes the blocked backend when the block after the first term has at
#: most BLOCKED_MAX_ORDER rows and is at least BLOCKED_MIN_DENSITY full (or has
#: at most BLOCKED_SMALL_ORDER rows, where a dense factor costs next to nothing),
#: and fits in memory. MovieLens-10M's shape (69,878 users × 10,677 items, ML,
#: ``datasets.simulate_ratings``): blocked 15–23 s an iteration, CHOLMOD 108–142 s
#: (its selected inversion walks the dense block column by column), the same
#: objective at every iteration.
BLOCKED_MAX_ORDER, BLOCKED_MIN_DENSITY, BLOCKED_SMALL_ORDER = 20_000, 0.1, 500

__all__ = ["BACKENDS", "BlockedBackend", "DenseBackend", "ProfiledBackend", "Solution", "SparseBackend",
           "make_backend"]


def make_backend(layout: Layout, cp: Crossprod, reml: bool, backend: str = "auto",
                 group_codes: np.ndarray | None = None, max_memory: float | None = None) -> ProfiledBackend:
    """Build the requested backend ("auto": dense when nested and small, blocked when crossed and the
    trailing block is dense and small, else sparse).

    ``max_memory`` (bytes; default the available memory) bounds the factor:
    a larger model raises :class:`~sparselmm.errors.ModelSizeError` before
    any numeric work.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "sparse":
        return SparseBackend(layout, cp, reml, max_memory)
    if backend == "blocked":
        return BlockedBackend(layout, cp, reml, max_memory)
    col_group = nested_groups(layout, group_codes)
    if backend == "dense":
        if col_group is None:
            names = ", ".join(t.group for t in layout.terms)
            raise ValueError(f"backend='dense' needs random effects nested in one grouping factor; "
                             f"the terms on {names} are crossed: use backend='blocked' or 'sparse'")
        return DenseBackend(layout, cp, reml, col_group, max_memory)
    # one group (statsmodels' way of writing crossed effects) is not a partition: blocked or sparse
    sizes = np.bincount(col_group) if col_group is not None else None
    if sizes is not None and len(sizes) > 1 and sizes.max() <= MAX_GROUP_SIZE:
        return DenseBackend(layout, cp, reml, col_group, max_memory)
    m = layout.q - int(layout.col_offset[1])
    limit = memory_limit(max_memory)
    fits = dense_bytes(layout, "packed") <= limit
    if fits and (m <= BLOCKED_SMALL_ORDER or (m <= BLOCKED_MAX_ORDER
                                               and schur_density(layout, cp) >= BLOCKED_MIN_DENSITY)):
        return BlockedBackend(layout, cp, reml, max_memory)
    if not fits:
        _refuse_dense_schur(layout, cp, m, limit)
    return SparseBackend(layout, cp, reml, max_memory)


#: A block after the first term this full is filled in by any Cholesky factor: "auto" sizes the
#: factor from it at once, without CHOLMOD's symbolic analysis (minutes on 25M rows).
DENSE_SCHUR = 0.5


def _refuse_dense_schur(layout: Layout, cp: Crossprod, m: int, limit: float) -> None:
    """Refuse a model whose block after the first term is dense and too large for memory, as a
    sparse factor too: at least its lower triangle is in the factor."""
    density = schur_density(layout, cp)
    entries = density * m * (m + 1) / 2
    if density >= DENSE_SCHUR and entries * SPARSE_BYTES_PER_ENTRY > limit:
        rest = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in layout.terms[1:])
        refuse(f"The Cholesky factor of this model (with {layout.terms[0].group} "
               f"({layout.terms[0].nlevels} levels) eliminated, {rest} leave a block of order {m:,} that is "
               f"{density:.0%} full: about {entries:,.0f} entries as a sparse factor, "
               f"{dense_bytes(layout, 'packed') / 2**30:.1f} GiB and some "
               f"{format_seconds(dense_iteration_seconds(m))} an iteration on this machine as a dense one)",
               entries * SPARSE_BYTES_PER_ENTRY, limit,
               "Reduce the levels of the smaller crossed factors (or drop, nest or merge a term); "
               "backend='sparse' lets CHOLMOD's analysis try its orderings.")

"""Backends: θ in; objective, solution and conditional variances out.

``make_backend`` picks the dense per-group backend when the random effects
partition the rows into small independent groups, and CHOLMOD otherwise.
"""

from __future__ import annotations

import numpy as np

from ..crossprod import Crossprod
from ..design import Layout
from .base import ProfiledBackend, Solution
from .dense import MAX_GROUP_SIZE, DenseBackend, nested_groups
from .sparse import SparseBackend

BACKENDS = ("auto", "dense", "sparse")

__all__ = ["BACKENDS", "DenseBackend", "ProfiledBackend", "Solution", "SparseBackend", "make_backend"]


def make_backend(layout: Layout, cp: Crossprod, reml: bool, backend: str = "auto",
                 group_codes: np.ndarray | None = None, max_memory: float | None = None) -> ProfiledBackend:
    """Build the requested backend ("auto": dense when nested and small, else sparse).

    ``max_memory`` (bytes; default the available memory) bounds the factor:
    a larger model raises :class:`~sparselmm.errors.ModelSizeError` before
    any numeric work.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "sparse":
        return SparseBackend(layout, cp, reml, max_memory)
    col_group = nested_groups(layout, group_codes)
    if backend == "dense":
        if col_group is None:
            names = ", ".join(t.group for t in layout.terms)
            raise ValueError(f"backend='dense' needs random effects nested in one grouping factor; "
                             f"the terms on {names} are crossed: use backend='sparse'")
        return DenseBackend(layout, cp, reml, col_group, max_memory)
    # one group (statsmodels' way of writing crossed effects) is not a partition: sparse
    sizes = np.bincount(col_group) if col_group is not None else None
    if sizes is not None and len(sizes) > 1 and sizes.max() <= MAX_GROUP_SIZE:
        return DenseBackend(layout, cp, reml, col_group, max_memory)
    return SparseBackend(layout, cp, reml, max_memory)

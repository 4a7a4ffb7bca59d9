"""Backends: θ in; objective, solution, gradient and conditional variances out.

``make_backend`` picks the dense per-group backend when the random effects
partition the rows into small independent groups; otherwise the blocked
backend or CHOLMOD, whichever an iteration is estimated to cost less on
(``cost.prefer_blocked``: the dense algebra at the measured LAPACK rate and
the passes over L21, against the multiply-adds of CHOLMOD's symbolic factor
and selected inversion).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..crossprod import Crossprod
from ..design import Layout
from ..cost import DENSE_SCHUR, blocked_iteration_seconds, format_seconds, prefer_blocked
from ..errors import ModelSizeError
from ..memory import SPARSE_BYTES_PER_ENTRY, memory_limit, refuse
from .base import ProfiledBackend, Solution
from .blocked import schur_factor_fill, BlockedBackend, dense_bytes, dense_order, schur_density, schur_pairs
from .dense import MAX_GROUP_SIZE, DenseBackend, nested_groups
from .gpu import DEVICES, DeviceBlockedBackend, cuda_ops, gpu_wanted, resolve_device
from .sparse import SparseBackend

BACKENDS = ("auto", "dense", "blocked", "sparse")

__all__ = ["BACKENDS", "DEVICES", "BlockedBackend", "DenseBackend", "DeviceBlockedBackend", "ProfiledBackend",
           "Solution", "SparseBackend", "blocked_or_sparse", "make_backend"]


def make_backend(layout: Layout, cp: Crossprod, reml: bool, backend: str = "auto",
                 group_codes: np.ndarray | None = None, max_memory: float | None = None,
                 device: str = "cpu") -> ProfiledBackend:
    """Build the requested backend ("auto": dense when nested and small, else blocked or sparse by the
    estimated cost of an iteration, :func:`~sparselmm.cost.prefer_blocked`).

    ``max_memory`` (bytes; default the available memory) bounds the factor:
    a larger model raises :class:`~sparselmm.errors.ModelSizeError` before
    any numeric work. ``device``: "cuda" puts the blocked backend's dense
    block on the GPU (:class:`~sparselmm.backends.gpu.DeviceBlockedBackend`;
    ``max_memory`` then bounds the GPU's arrays), "auto" does where CuPy finds
    a GPU and the block is dense and large (:func:`~sparselmm.backends.gpu.gpu_wanted`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if resolve_device(device, backend) != "cpu" and gpu_wanted(device, layout, cp):
        try:
            return DeviceBlockedBackend(layout, cp, reml, max_memory, cuda_ops())
        except Exception as err:  # "auto" falls back to the CPU, saying why (no room, no driver); "cuda" raises
            if device == "cuda":
                raise
            warnings.warn(f"device='auto': the GPU could not be used ({err}); the fit runs on the CPU",
                          RuntimeWarning, stacklevel=3)
    if backend == "sparse":
        return SparseBackend(layout, cp, reml, max_memory)
    if backend == "blocked":
        return BlockedBackend(layout, cp, reml, max_memory)
    col_group = nested_groups(layout, group_codes, cp)
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
    choice = blocked_or_sparse(layout, cp, reml, max_memory)
    return BlockedBackend(layout, cp, reml, max_memory) if choice is True else choice


def blocked_or_sparse(layout: Layout, cp: Crossprod, reml: bool, max_memory: float | None = None):
    """The choice between the blocked and the sparse backend: True (blocked), or the
    :class:`SparseBackend` whose symbolic analysis decided (reused as it is). From the structure where
    that is clear (a full or small dense block, or one whose factor fills in to half full: a pass
    over the pairs of rows), else from CHOLMOD's count of its work (:func:`~sparselmm.cost.prefer_blocked`)."""
    m = dense_order(layout)
    limit = memory_limit(max_memory)
    if dense_bytes(layout, "packed") > limit:
        _refuse_dense_schur(layout, cp, m, limit)
        return SparseBackend(layout, cp, reml, max_memory)
    pairs, density = schur_pairs(layout, cp), schur_density(layout, cp)
    choice = prefer_blocked(m, pairs, density, layout.q)
    if choice is None:  # a sparse block: does its factor fill in?
        choice = prefer_blocked(m, pairs, density, layout.q, factor_fill=schur_factor_fill(layout, cp, pairs))
    if choice is None:  # a close call: CHOLMOD's symbolic analysis counts its work
        try:
            sparse = SparseBackend(layout, cp, reml, max_memory)
        except ModelSizeError:  # CHOLMOD's factor would not fit; the dense block does
            return True
        return sparse if not prefer_blocked(m, pairs, density, layout.q, sparse.flops) else True
    return True


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
               f"{format_seconds(blocked_iteration_seconds(m, schur_pairs(layout, cp), layout.q))} an iteration "
               "on this machine as a dense one)",
               entries * SPARSE_BYTES_PER_ENTRY, limit,
               "Reduce the levels of the smaller crossed factors (or drop, nest or merge a term); "
               "backend='sparse' lets CHOLMOD's analysis try its orderings.")

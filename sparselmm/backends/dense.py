"""Dense per-group backend: block-diagonal A(θ), one small block per group.

When every random-effect term's levels are nested in the levels of one
grouping factor (one factor with several terms, ``(1|a/b)``, statsmodels'
``groups`` with ``exog_re`` and variance components inside groups), Z'Z is
block diagonal once Z's columns are ordered by group. A(θ) is then a set of
small dense blocks A_g = Λ_g'Z_g'Z_gΛ_g + I, factored by a Numba kernel
that runs in parallel over groups. The blocks Z_g'Z_g are cut once from the
shared crossproducts; an evaluation costs O(Σ_g q_g³) and touches no row.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..crossprod import Crossprod
from ..design import Layout
from ..cost import Estimate, groups_iteration_seconds
from ..memory import DENSE_BYTES_PER_ENTRY, memory_limit, refuse
from .base import ProfiledBackend


#: A group block larger than this is left to the sparse backend.
MAX_GROUP_SIZE = 64


def nested_groups(layout: Layout, group_codes: np.ndarray | None = None, cp: Crossprod | None = None) -> np.ndarray | None:
    """Group of each column of Z, when all terms are nested in one factor.

    Parameters
    ----------
    layout : Layout
    group_codes : ndarray of int, optional
        Group of each row. By default the term with the fewest levels is
        tried as the grouping factor.
    cp : Crossprod, optional
        For terms without rows (a model read in pieces): the groups from Z'Z's pattern.

    Returns
    -------
    ndarray of int, shape (q,), or None
        None when some term's level spans several groups.
    """
    terms = layout.terms
    if group_codes is None and cp is not None and all(len(t.codes) == 0 for t in terms):
        return _nested_from_pattern(layout, cp.ZtZ)
    if group_codes is None:
        group_codes = min(terms, key=lambda t: t.nlevels).codes
    group_codes = np.asarray(group_codes, dtype=np.int64)
    cols = []
    for t in terms:
        if t.codes is group_codes:  # the grouping factor's own term: each level is a group
            cols.append(np.repeat(np.arange(t.nlevels), t.p))
            continue
        active = t.active
        codes, groups = t.codes[active], group_codes[active]
        group_of_level = np.zeros(t.nlevels, dtype=np.int64)
        group_of_level[codes] = groups
        if np.any(group_of_level[codes] != groups):
            return None  # a level seen in two groups
        cols.append(np.repeat(group_of_level, t.p))
    return np.concatenate(cols)


def _nested_from_pattern(layout: Layout, ZtZ) -> np.ndarray | None:
    """:func:`nested_groups` with the fewest-levels term as the grouping factor, read off Z'Z's block
    pattern: a level's column meets the grouping term's levels it shares rows with."""
    g = int(np.argmin(layout.nlevels))
    lo, hi, pg = layout.col_offset[g], layout.col_offset[g + 1], int(layout.p[g])
    cols = []
    for k, t in enumerate(layout.terms):
        if k == g:
            cols.append(np.repeat(np.arange(t.nlevels), t.p))
            continue
        first = layout.col_offset[k] + np.arange(t.nlevels) * t.p  # a level's block: its first column's pattern
        starts, counts = ZtZ.indptr[first], ZtZ.indptr[first + 1] - ZtZ.indptr[first]
        level = np.repeat(np.arange(t.nlevels), counts)
        rows = ZtZ.indices[np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())]
        met = (rows >= lo) & (rows < hi)
        group_of_level = np.zeros(t.nlevels, dtype=np.int64)
        groups = (rows[met] - lo) // pg
        group_of_level[level[met]] = groups
        if np.any(group_of_level[level[met]] != groups):
            return None  # a level meets two groups
        cols.append(np.repeat(group_of_level, t.p))
    return np.concatenate(cols)


class DenseBackend(ProfiledBackend):
    """Per-group dense backend (see the module docstring).

    Parameters
    ----------
    layout : Layout
    cp : Crossprod
    reml : bool
    col_group : ndarray of int, shape (q,)
        Group of each column of Z, from :func:`nested_groups`.
    """

    name = "dense"

    def __init__(self, layout: Layout, cp: Crossprod, reml: bool, col_group: np.ndarray,
                 max_memory: float | None = None):
        super().__init__(layout, cp, reml)
        q = layout.q
        order = kernels.counting_order(col_group, int(col_group.max()) + 1)
        ngroups = int(col_group.max()) + 1
        sizes = np.bincount(col_group, minlength=ngroups)
        limit = memory_limit(max_memory)
        nbytes = 3.0 * DENSE_BYTES_PER_ENTRY * float((sizes.astype(float) ** 2).sum())  # Z'Z, L and A⁻¹ blocks
        if nbytes > limit:
            refuse(f"The dense blocks of {ngroups} groups (largest {sizes.max()} × {sizes.max()})", nbytes, limit,
                   "Use backend='sparse', or fewer random effects per group.")
        self._order = order
        self._nbytes, self._cubes, self._sizes = nbytes, float((sizes.astype(float) ** 3).sum()), sizes
        self._in_order = bool(np.all(col_group[1:] >= col_group[:-1]))  # Z's columns already by group
        self._gptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._zoff = np.concatenate([[0], np.cumsum(sizes * sizes)]).astype(np.int64)
        loc = np.empty(q, dtype=np.int64)
        loc[order] = np.arange(q)
        self._loc = loc
        term = np.repeat(np.arange(len(layout.terms)), layout.p * layout.nlevels)
        comp = np.concatenate([np.tile(np.arange(p), nl) for p, nl in zip(layout.p, layout.nlevels)])
        self._lterm, self._lcomp = (term, comp) if self._in_order else (term[order], comp[order])
        self._ztz = np.zeros(self._zoff[-1])
        self._ztxy = np.empty((q, self.p + 1))
        ZtZ = cp.ZtZ
        if not kernels.pick(kernels.dense_blocks, ngroups)(ZtZ.indptr, ZtZ.indices, ZtZ.data, cp.ZtXy, order, col_group, loc,
                                    self._gptr, self._zoff, self._ztz, self._ztxy):
            raise ValueError("Z'Z is not block diagonal by group")
        self._L = np.zeros(self._zoff[-1])
        self._lam = np.zeros(self._zoff[-1])
        self._C = np.empty_like(self._ztxy)  # written by every factorization
        self._toff = layout.tindex[1]
        self._lam_index = kernels.pick(kernels.dense_lambda_index, ngroups)(self._gptr, self._zoff, self._lterm, self._lcomp, self._toff,
                                                     layout.p)
        self._nchunks = 4 * kernels.num_threads()
        self._size = int(sizes[0]) if sizes.min() == sizes.max() else 0  # equal groups: kernels for the size
        self._info = None

    def _load_response(self) -> None:
        self._ztxy[:, -1] = self.cp.ZtXy[self._order, -1]

    @property
    def ngroups(self) -> int:
        return len(self._gptr) - 1

    def _kernel(self, kernel):
        """The kernel, its serial twin for few groups, compiled for the group size when all are equal
        and small (``kernels.pick``)."""
        return kernels.pick(kernel, self.ngroups, self._size)

    def estimate(self) -> Estimate:
        return Estimate(self._nbytes, groups_iteration_seconds(self._cubes, self.layout.q))

    def describe(self) -> str:
        return f"dense backend: {len(self._sizes):,} groups of at most {self._sizes.max()} columns"

    def _factor(self, theta):
        factor = self._kernel(kernels.dense_factor)
        tflat = np.concatenate([T.ravel() for T in self.layout.T(theta)])
        # every Λ_g is filled into self._lam, kept for the gradient at this θ
        logdet, CtC = factor(self._gptr, self._zoff, self._ztz, self._ztxy, self._lam_index, tflat, self._lam,
                             self._L, self._C, self._nchunks)
        return logdet, self._C, CtC

    def _back_solve(self, v):
        if v.ndim == 2:
            return np.column_stack([self._back_solve(v[:, i]) for i in range(v.shape[1])])
        out = np.empty_like(v)
        self._kernel(kernels.dense_back_solve)(self._gptr, self._zoff, self._L, np.ascontiguousarray(v), out)
        return out if self._in_order else out[self._loc]

    def _derivatives(self, theta, beta, u, info):
        """The per-group kernel's sums (``kernels.dense_gradient``); with ``info``, the average
        information's too, kept for this θ (the driver asks for it right after the gradient)."""
        self._update(theta)  # the factor, and Λ_g, at θ
        out = self._kernel(kernels.dense_gradient)(
            self._gptr, self._zoff, self._ztz, self._ztxy, self._lam, self._lterm, self._lcomp,
            self._toff, self.layout.p, self.layout.tindex[0], self._L, self._C, beta,
            np.ascontiguousarray(u if self._in_order else u[self._order]), self.layout.ntheta, info, self._nchunks)
        if info:
            self._info = (self._theta, out[3:])
        return out

    def _gradient_pieces(self, theta, beta, u, traces: bool = True):
        """The gradient sums from the per-group kernel (traces always: they come with the rest);
        at β̂ the average information's as well."""
        at_hat = np.array_equal(beta, self._update(theta)[3] - self.cp.beta_shift)
        return self._derivatives(theta, beta, u, at_hat)[:3]

    def _level_block_sums(self, theta):
        """Σ_l A⁻¹_ll per term from the per-group inverses (``kernels.dense_level_sums``)."""
        self._update(theta)
        sums = self._kernel(kernels.dense_level_sums)(self._gptr, self._zoff, self._L, self._lterm, self._lcomp,
                                                      self.layout.p, self._nchunks)
        return [sums[k, :p, :p] for k, p in enumerate(self.layout.p)]

    def _information_pieces(self, theta, beta, u):
        """The average information's sums: kept from the gradient at this θ, or from the kernel."""
        self._update(theta)
        if self._info is not None and self._info[0] is self._theta:
            return self._info[1]
        return self._derivatives(theta, beta, u, True)[3:]

    def inverse_columns(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Columns of A⁻¹: nonzero only on the rows of each column's own group."""
        gather = self.inverse_gather(theta)
        out = np.zeros((self.layout.q, len(cols)))
        for j, c in enumerate(cols):
            g = np.searchsorted(self._gptr, self._loc[c], side="right") - 1
            rows = self._order[self._gptr[g]:self._gptr[g + 1]]
            out[rows, j] = gather(rows, np.full(len(rows), c))
        return out

    def dense_inverse(self, theta: np.ndarray) -> np.ndarray:
        """A⁻¹ dense: each group's block of pairs of its columns, zeros elsewhere."""
        gather = self.inverse_gather(theta)
        sizes = np.diff(self._gptr)
        area = sizes * sizes
        start = np.repeat(self._gptr[:-1], area)
        within = np.arange(area.sum()) - np.repeat(np.cumsum(area) - area, area)
        size = np.repeat(sizes, area)
        rows, cols = self._order[start + within // size], self._order[start + within % size]
        out = np.zeros((self.layout.q, self.layout.q))
        out[rows, cols] = gather(rows, cols)
        return out

    def inverse_gather(self, theta: np.ndarray):
        self._update(theta)
        inv = np.empty_like(self._L)
        self._kernel(kernels.dense_inverse)(self._gptr, self._zoff, self._L, inv)
        group = np.repeat(np.arange(self.ngroups), np.diff(self._gptr))

        def gather(rows, cols):
            lr, lc = self._loc[rows], self._loc[cols]
            g = group[lr]
            size = self._gptr[g + 1] - self._gptr[g]
            return inv[self._zoff[g] + (lr - self._gptr[g]) * size + (lc - self._gptr[g])]

        return gather

"""One sparse group: CHOLMOD on Λ'Z'ZΛ + I (DESIGN.md §3).

The symbolic analysis (fill-reducing ordering, supernodes) is done once at
construction, on a pattern that holds whole level blocks, so it is valid for
every θ, including θ on the boundary. Each evaluation refills the values of
Λ'Z'ZΛ from the stored Z'Z through a precomputed map, refactors in place
(CHOLMOD adds I through β = 1), and solves C = L⁻¹ P Λ'Z'[X y] for the p + 1
columns of [X y] (lme4's approach: CHOLMOD factors only the random-effects
block; the small dense block is left to LAPACK, in the base class).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import kernels
from ..crossprod import Crossprod
from ..design import Layout
from ..cost import Estimate, sparse_iteration_seconds
from ..errors import ModelSizeError
from ..lapack import cholesky_inverse
from ..memory import DENSE_BYTES_PER_ENTRY, SPARSE_BYTES_PER_ENTRY, memory_limit, refuse
from .base import ProfiledBackend


#: Orderings tried at analysis (see :meth:`SparseBackend._analyze`).
ORDERINGS = ("natural", "default")

#: Costs, in multiply-adds of LAPACK's dpotri, of one Takahashi look-up by
#: binary search in a sparse column, and of one look-up in the dense block
#: (roughly measured: ~40 ns a search, ~0.1 ns a dpotri multiply-add).
SEARCH_COST, DENSE_COST = 300.0, 20.0


def dense_split(indptr: np.ndarray, indices: np.ndarray, candidates: int = 64) -> tuple[int, float]:
    """First column of the trailing block of L to invert as a dense matrix.

    In the Takahashi recurrences, column j < s needs Z[i, k] for every pair
    of its rows: a binary search when the pair has a row before s, a direct
    read of the dense inverse otherwise. The trailing block of order
    m = q − s costs about 2m³/3 in ``dpotri`` (its structural zeros make it
    no less exact). Crossed designs end in a block that is nearly, not
    exactly, full, so the best split is well before the first exactly dense
    column. Depends only on the pattern: computed once per model.

    Returns the split and its cost (in dpotri multiply-adds).
    """
    q = len(indptr) - 1
    counts = np.diff(indptr)
    col = np.repeat(np.arange(q), counts)
    n_off = np.bincount(col[indices > col], minlength=q).astype(float)  # strictly below the diagonal
    splits = np.unique(np.linspace(0, q, candidates + 1).astype(np.int64))
    # r[j, s]: column j's rows strictly below the diagonal and before s (rows sorted within a column)
    keys = col * (q + 1) + indices
    before = np.searchsorted(keys, np.arange(q)[:, None] * (q + 1) + splits[None, :]) - indptr[:-1, None]
    diag = np.searchsorted(keys, np.arange(q) * (q + 1) + np.arange(q) + 1) - indptr[:-1]  # rows ≤ j
    r = np.maximum(before - diag[:, None], 0).astype(float)
    live = np.arange(q)[:, None] < splits[None, :]  # columns j < s
    n = n_off[:, None]
    searched = np.where(live, n * n - (n - r) ** 2, 0.0).sum(axis=0)
    dense = np.where(live, (n - r) ** 2, 0.0).sum(axis=0)
    cost = SEARCH_COST * searched + DENSE_COST * dense + 2.0 * (q - splits).astype(float) ** 3 / 3.0
    k = int(np.argmin(cost))
    return int(splits[k]), float(cost[k])


class SparseBackend(ProfiledBackend):
    """CHOLMOD backend for crossed, nested or any design.

    Parameters
    ----------
    layout : Layout
        Random-effect terms.
    cp : Crossprod
        Crossproducts of [Z X y].
    reml : bool
        REML criterion (True) or ML deviance (False).
    max_memory : float, optional
        Bytes the factor may use; by default the available memory. A larger
        model is refused (:class:`~sparselmm.errors.ModelSizeError`) after the
        symbolic analysis, before any numeric work.
    """

    name = "sparse"

    def __init__(self, layout: Layout, cp: Crossprod, reml: bool = True, max_memory: float | None = None):
        super().__init__(layout, cp, reml)
        self._limit = memory_limit(max_memory)
        q = layout.q
        term = np.repeat(np.arange(len(layout.terms)), layout.p * layout.nlevels)
        comp = np.concatenate([np.tile(np.arange(p), nl) for p, nl in zip(layout.p, layout.nlevels)])
        tindex, toff = layout.tindex
        lptr, lidx, self._ptr, self._src, self._t1, self._t2 = kernels.lambda_map(
            cp.ZtZ.indptr, cp.ZtZ.indices, term, comp, layout.p, tindex, toff
        )
        self._A = sp.csc_matrix((np.ones(len(lidx)), lidx, lptr), shape=(q, q))
        self._A.has_sorted_indices = True
        self.flops, self.factor, self.ordering, (self._lptr, self._lidx), self._split = self._analyze()
        self._pinv = np.empty(q, dtype=np.int64)
        self._pinv[self.factor.P()] = np.arange(q)
        self._rhs = cp.ZtXy
        self._inv_buffers = None

    def _analyze(self):
        """Symbolic analysis under each candidate ordering; keep the cheapest factor.

        "natural" is Z's own order: terms sorted by decreasing number of
        levels (lme4's order), so the largest factor is eliminated first and
        its block of L is block diagonal, the rest a trailing (often dense)
        block: MixedModels.jl's blocked structure, which also makes the
        selected inversion cheap. CHOLMOD's own fill-reducing ordering
        ("default": AMD, or METIS) wins when the trailing block would be
        large and sparse. The cost compared is that of a factorization
        (Σ_j |L_j|² of the exact symbolic factor) plus a selected inversion
        (:func:`dense_split`); it is kept as ``flops`` (``cost.sparse_iteration_seconds``).
        """
        pattern = self._A.copy()
        pattern.data[:] = 1.0
        full = (pattern + pattern.T).tocsc()
        max_entries = self._limit / SPARSE_BYTES_PER_ENTRY
        best, smallest = None, np.inf
        from sksparse import cholmod  # CHOLMOD: imported when this backend is first built

        def fill(perm):
            """The lower triangle of P A P' (int64 CSC), its elimination tree, nnz(L) and L's column
            counts (none when nnz(L) exceeds what memory allows: nnz is then a lower bound)."""
            lower = sp.tril(full[perm][:, perm]).tocsc()
            lower.sort_indices()
            indptr, indices = lower.indptr.astype(np.int64), lower.indices.astype(np.int64)
            parent = kernels.etree(indptr, indices)
            return (indptr, indices, parent, *kernels.column_counts(indptr, indices, parent, max_entries))

        for ordering in ORDERINGS:
            try:
                factor = cholmod.analyze(self._A, mode="supernodal", ordering_method=ordering)
            except (cholmod.CholmodTooLargeError, cholmod.CholmodOutOfMemoryError):
                # CHOLMOD's own limit (its symbolic factor overflows): size it ourselves for the message
                if ordering == "natural":
                    smallest = min(smallest, fill(np.arange(self.layout.q))[3])
                continue
            indptr, indices, parent, nnz, counts = fill(factor.P())
            smallest = min(smallest, nnz)
            if len(counts) == 0:
                continue  # this ordering's factor is too large
            lptr, lidx = kernels.symbolic_pattern(indptr, indices, parent)
            split, inverse_cost = dense_split(lptr, lidx)
            m = len(counts) - split
            if nnz * SPARSE_BYTES_PER_ENTRY + m * m * DENSE_BYTES_PER_ENTRY > self._limit:
                continue
            cost = float((counts.astype(float) ** 2).sum()) + inverse_cost
            if best is None or cost < best[0]:
                best = (cost, factor, ordering, (lptr, lidx), split)
        if best is None:
            terms = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in self.layout.terms)
            need = smallest * SPARSE_BYTES_PER_ENTRY
            advice = ("Crossed factors with many levels fill a dense block: reduce the levels of the smaller "
                      "crossed factors (or drop, nest or merge a term).")
            if need < self._limit:  # within memory, but CHOLMOD's own analysis refused every ordering
                raise ModelSizeError(f"CHOLMOD could not analyze the sparse Cholesky factor of this model (terms "
                                     f"{terms}; at least {smallest:,.0f} entries, {need / 2**30:.2f} GiB): "
                                     f"it is too large for CHOLMOD. {advice}", nbytes=int(need))
            capped = need >= self._limit  # the count stopped at the limit: a lower bound
            refuse(f"The sparse Cholesky factor of this model (terms {terms}; more than {smallest:,.0f} entries)",
                   need, self._limit, advice, at_least=capped)
        return best

    def estimate(self) -> Estimate:
        m = self.layout.q - self._split
        return Estimate(len(self._lidx) * SPARSE_BYTES_PER_ENTRY + m * m * DENSE_BYTES_PER_ENTRY,
                        sparse_iteration_seconds(self.flops, self.layout.q))

    def describe(self) -> str:
        return f"sparse backend: CHOLMOD, {self.ordering} ordering, {len(self._lidx):,} entries in the factor"

    def _factor(self, theta):
        kernels.lambda_map_apply(self._ptr, self._src, self._t1, self._t2, theta, self.cp.ZtZ.data, self._A.data)
        self.factor.cholesky_inplace(self._A, beta=1.0)
        C = self.factor.solve_L(self.factor.apply_P(self.layout.lambda_t_times(theta, self._rhs)), False)
        return self.factor.logdet(), C, C.T @ C

    def _forward(self, B):
        return self.factor.solve_L(self.factor.apply_P(B), False)

    def _back_solve(self, v):
        return self.factor.apply_Pt(self.factor.solve_Lt(v, False))

    def inverse_columns(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self._update(theta)
        q = self.layout.q
        E = sp.csc_matrix((np.ones(len(cols)), (cols, np.arange(len(cols)))), shape=(q, len(cols)))
        return np.asarray(self.factor.solve_A(E).todense())

    def inverse_gather(self, theta: np.ndarray):
        """A function ``gather(rows, cols)`` returning entries of A(θ)⁻¹.

        The entries of (P A P')⁻¹ on the exact pattern of L come from the
        Takahashi recurrences over the sparse leading columns of L, and
        LAPACK's ``dpotri`` on its dense trailing block (DESIGN.md §4).
        The function reads buffers that the next call overwrites: use it
        before calling again.
        """
        self._update(theta)
        L = self.factor.L().tocsc()
        L.sort_indices()
        lptr, lidx, j0 = self._lptr, self._lidx, self._split
        q = L.shape[0]
        if self._inv_buffers is None:  # reused: fresh pages for ~10 MB a call cost more than the copy
            self._inv_buffers = (np.empty(len(lidx)), np.empty((q - j0, q - j0), order="F"), np.empty(len(lidx)))
        data, Z22, zval = self._inv_buffers
        kernels.scatter_to_pattern(lptr, lidx, L.indptr.astype(np.int64), L.indices.astype(np.int64), L.data, data)
        if j0 < q:  # the lower triangle of the trailing block's inverse
            kernels.dense_trailing_block(lptr, lidx, data, j0, Z22)
            cholesky_inverse(Z22)
        kernels.pick(kernels.takahashi, j0)(lptr, lidx, data, j0, Z22, zval)
        pinv = self._pinv

        def gather(rows, cols):
            out = np.empty(len(rows))
            kernels.selected_gather(pinv[rows], pinv[cols], j0, Z22, lptr, lidx, zval, out)
            return out

        return gather

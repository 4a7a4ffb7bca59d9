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
from scipy.linalg.lapack import dpotri
from sksparse import cholmod

from .. import kernels
from ..crossprod import Crossprod
from ..design import Layout
from .base import ProfiledBackend


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
    """

    name = "sparse"

    def __init__(self, layout: Layout, cp: Crossprod, reml: bool = True):
        super().__init__(layout, cp, reml)
        q = layout.q
        term = np.repeat(np.arange(len(layout.terms)), layout.p * layout.nlevels)
        comp = np.concatenate([np.tile(np.arange(p), nl) for p, nl in zip(layout.p, layout.nlevels)])
        tindex, toff = layout.tindex
        lptr, lidx, self._ptr, self._src, self._t1, self._t2 = kernels.lambda_map(
            cp.ZtZ.indptr, cp.ZtZ.indices, term, comp, layout.p, tindex, toff
        )
        self._A = sp.csc_matrix((np.ones(len(lidx)), lidx, lptr), shape=(q, q))
        self._A.has_sorted_indices = True
        self.factor = cholmod.analyze(self._A, mode="supernodal")
        self._rhs = np.column_stack([cp.ZtX, cp.Zty])

    def _factor(self, theta):
        kernels.lambda_map_apply(self._ptr, self._src, self._t1, self._t2, theta, self.cp.ZtZ.data, self._A.data)
        self.factor.cholesky_inplace(self._A, beta=1.0)
        C = self.factor.solve_L(self.factor.apply_P(self.layout.lambda_t_times(theta, self._rhs)), False)
        return self.factor.logdet(), C

    def _back_solve(self, v):
        return self.factor.apply_Pt(self.factor.solve_Lt(v, False))

    def inverse_gather(self, theta: np.ndarray):
        """A function ``gather(rows, cols)`` returning entries of A(θ)⁻¹.

        The entries of (P A P')⁻¹ on the pattern of L come from the Takahashi
        recurrences over the sparse leading columns of L, and LAPACK's
        ``dpotri`` on its dense trailing block (DESIGN.md §4).
        """
        self._update(theta)
        L = self.factor.L().tocsc()
        L.sort_indices()
        q = L.shape[0]
        dense = np.diff(L.indptr) == q - np.arange(q)
        j0 = q - (q if dense.all() else int(np.argmin(dense[::-1])))
        Z22 = np.zeros((0, 0))
        if j0 < q:
            Z22, info = dpotri(L[j0:, j0:].toarray(), lower=1)
            if info:
                raise np.linalg.LinAlgError(f"dpotri failed with info={info}")
            Z22 = np.tril(Z22) + np.tril(Z22, -1).T
        zval = np.zeros(L.nnz)
        kernels.takahashi(L.indptr, L.indices, L.data, j0, Z22, zval)
        pinv = np.empty(q, dtype=np.int64)
        pinv[self.factor.P()] = np.arange(q)

        def gather(rows, cols):
            out = np.empty(len(rows))
            kernels.selected_gather(pinv[rows], pinv[cols], j0, Z22, L.indptr, L.indices, zval, out)
            return out

        return gather

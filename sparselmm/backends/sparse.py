"""One sparse group: CHOLMOD on Λ'Z'ZΛ + I (DESIGN.md §3).

The symbolic analysis (fill-reducing ordering, supernodes) is done once at
construction, on a pattern that holds whole level blocks, so it is valid for
every θ, including θ on the boundary. Each evaluation refills the values of
Λ'Z'ZΛ from the stored Z'Z through a precomputed map, refactors in place
(CHOLMOD adds I through β = 1), and solves for the p + 1 columns of [X y]:

    C = L⁻¹ P Λ'Z'[X y],     [X y]'[X y] − C'C = R'R,

whose upper factor R holds RX, the fixed effects and r (lme4's approach:
CHOLMOD factors only the random-effects block; the small dense block is
done by LAPACK).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dpotri
from sksparse import cholmod

from .. import kernels
from ..crossprod import Crossprod
from ..design import Layout
from .base import Solution, profiled_objective, schur_factor


class SparseBackend:
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

    def __init__(self, layout: Layout, cp: Crossprod, reml: bool = True):
        self.layout, self.cp, self.reml = layout, cp, reml
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
        Xy = np.append(cp.Xty, cp.yty)
        self._G = np.block([[cp.XtX, cp.Xty[:, None]], [Xy[None, :]]])
        self._theta = None
        self.nfactor = 0

    @property
    def p(self) -> int:
        return self.cp.XtX.shape[0]

    def _update(self, theta: np.ndarray):
        """Factor A(θ) and form C and R; cached for the last θ."""
        theta = np.asarray(theta, dtype=float)
        if self._theta is not None and np.array_equal(theta, self._theta):
            return self._state
        kernels.lambda_map_apply(self._ptr, self._src, self._t1, self._t2, theta, self.cp.ZtZ.data, self._A.data)
        self.factor.cholesky_inplace(self._A, beta=1.0)
        self.nfactor += 1
        C = self.factor.solve_L(self.factor.apply_P(self.layout.lambda_t_times(theta, self._rhs)), False)
        RX, beta, pwrss = schur_factor(self._G - C.T @ C, self.p)
        self._theta = theta.copy()
        self._state = (C, RX, beta, pwrss)
        return self._state

    def objective(self, theta: np.ndarray) -> float:
        _, RX, _, pwrss = self._update(theta)
        ld_rx = 2.0 * np.log(np.abs(np.diag(RX))).sum()
        return profiled_objective(self.factor.logdet(), ld_rx, pwrss, self.cp.n, self.p, self.reml)

    def solution(self, theta: np.ndarray) -> Solution:
        C, RX, beta, pwrss = self._update(theta)
        p = self.p
        u = self.factor.apply_Pt(self.factor.solve_Lt(C[:, p] - C[:, :p] @ beta, False))
        n = self.cp.n
        return Solution(
            theta=np.array(theta, dtype=float),
            objective=self.objective(theta),
            beta=beta,
            u=u,
            pwrss=pwrss,
            RX=RX,
            sigma2=pwrss / (n - p if self.reml else n),
        )

    def selected_inverse(self, theta: np.ndarray):
        """Entries of (P A P')⁻¹ on the pattern of L, as ``(gather, perm_inv)``.

        ``gather(rows, cols)`` returns entries of A⁻¹ at original indices.
        """
        self._update(theta)
        L = self.factor.L().tocsc()
        L.sort_indices()
        q = L.shape[0]
        counts = np.diff(L.indptr)
        dense = counts == q - np.arange(q)
        j0 = q - (q if dense.all() else int(np.argmin(dense[::-1])))
        L22 = L[j0:, j0:].toarray()
        Z22, info = dpotri(L22, lower=1) if q - j0 else (np.zeros((0, 0)), 0)
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

    def cond_var(self, theta: np.ndarray) -> list[np.ndarray]:
        gather = self.selected_inverse(theta)
        out = []
        for k, T in enumerate(self.layout.T(theta)):
            p, nl = T.shape[0], self.layout.nlevels[k]
            base = self.layout.col_offset[k] + np.arange(nl) * p
            a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
            rows = (base[:, None, None] + a[None]).ravel()
            cols = (base[:, None, None] + b[None]).ravel()
            W = gather(rows, cols).reshape(nl, p, p)
            out.append(np.einsum("ij,ljk,mk->lim", T, W, T))
        return out

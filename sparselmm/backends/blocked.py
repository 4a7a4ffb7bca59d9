"""Blocked backend: the first term's levels eliminated in closed form, the rest dense.

The first term (the one with the most levels) makes A11 = Λ1'Z1'Z1Λ1 + I
block diagonal: one p1 × p1 block per level, since two levels of one factor
never meet in a row. Eliminating it leaves the Schur complement

    S = A22 − L21 L21',   L21 = A21 L11⁻ᵀ,

of order m = q − q1, which in crossed designs (students × items, InstEval's
students × instructors) is dense whatever the ordering. This backend stores
it dense and hands it to LAPACK (MixedModels.jl's blocked Cholesky): the
update costs Σ_i |L21 block i|² multiply-adds in a Numba kernel, the dense
factor m³/3, against CHOLMOD's many tiny supernodal updates on the same
structure (InstEval: 37 ms a CHOLMOD factorization, ~14 ms here).

The gradient and the EM step need only Σ_l A⁻¹_ll per term: S⁻¹ by
LAPACK's ``dpotri`` gives the trailing terms' blocks, and for a scalar first
term one inner product with a weighted Gram matrix formed in the same Schur
pass gives its sum (:meth:`BlockedBackend._level_block_sums`). Each level's
own block of A⁻¹ (conditional variances; vector first terms) comes from
:func:`kernels.blocked_inverse`.

Storage. "full" keeps three m × m arrays (S's factor, S⁻¹, the Gram
matrix); "packed" keeps S's factor and S⁻¹ in LAPACK's rectangular full
packed format (``dtrttf`` + ``dpftri``, as fast as ``dpotri``), 1.5 m² in
all, and takes the first term's sum from :func:`kernels.blocked_inverse`'s
pass over L21 instead of the Gram matrix. MovieLens-10M's shape (m = 10,677):
2.7 GB of dense arrays full, 1.4 GB packed.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..cost import Estimate, blocked_iteration_seconds, format_seconds
from ..crossprod import Crossprod
from ..design import Layout
from ..lapack import cholesky, cholesky_inverse, packed_cholesky_inverse, triangular_solve
from ..memory import DENSE_BYTES_PER_ENTRY, memory_limit, refuse
from .base import ProfiledBackend


def _lower_pattern(layout: Layout, cp: Crossprod):
    """The lower triangle of Λ'Z'ZΛ: pattern and the map from θ (:func:`kernels.lambda_map`)."""
    term = np.repeat(np.arange(len(layout.terms)), layout.p * layout.nlevels)
    comp = np.concatenate([np.tile(np.arange(p), nl) for p, nl in zip(layout.p, layout.nlevels)])
    tindex, toff = layout.tindex
    return kernels.lambda_map(cp.ZtZ.indptr, cp.ZtZ.indices, term, comp, layout.p, tindex, toff)


def schur_density(layout: Layout, cp: Crossprod, columns: int = 512) -> float:
    """Fraction of the lower triangle of S (the block after the first term) that is structurally nonzero.

    From Z'Z's pattern alone: S[r, s] ≠ 0 when Z'Z[r, s] ≠ 0 or some level
    of the first term meets both r and s. Counted exactly on ``columns``
    evenly spaced columns of S (the decision it serves needs no more).
    """
    q1 = int(layout.col_offset[1])
    m = layout.q - q1
    if m == 0:
        return 1.0
    sample = np.unique(np.linspace(0, m - 1, min(m, columns)).astype(np.int64))
    ZtZ = cp.ZtZ
    filled = kernels.pick(kernels.schur_column_counts, len(sample))(ZtZ.indptr, ZtZ.indices, q1, sample)
    return float(filled.sum() / (m - sample).sum())


#: :func:`schur_factor_fill` forms S's pattern only up to this many pairs of rows of L21 (its cost).
FILL_MAX_PAIRS = 5e7

#: From this order, a factor of S that fills in in Z's order is checked under the reverse
#: Cuthill–McKee ordering too (a band hidden by the levels' order: CHOLMOD would find it); below,
#: a wrong choice costs less than the check (InstEval, m = 1,142: 20 ms more).
REORDER_MIN_ORDER = 2000


def schur_factor_fill(layout: Layout, cp: Crossprod, pairs: float, enough: float = 0.5) -> float | None:
    """Fraction of the lower triangle of the Cholesky factor of S that is structurally nonzero,
    counted up to ``enough`` of it (then ``enough`` is returned): in Z's order (the blocked
    backend's), and from :data:`REORDER_MIN_ORDER` the smaller of that and the fill under the reverse
    Cuthill–McKee ordering.

    S's lower pattern comes from Z'Z's (:func:`kernels.schur_lower_pattern`: ``pairs`` steps), the
    factor's column counts from its elimination tree without forming it (:func:`kernels.column_counts`).
    None beyond :data:`FILL_MAX_PAIRS` pairs. Where S is sparse but fills in (InstEval: S 21 % full,
    its factor 98 %), CHOLMOD's factor would be as dense as the dense block, and its symbolic
    analysis (a fifth of the fit) is not needed to know it; a banded or blocky S (a few % of fill)
    goes on to that analysis.
    """
    if pairs > FILL_MAX_PAIRS:
        return None
    q1 = int(layout.col_offset[1])
    m = layout.q - q1
    if m == 0:
        return 1.0
    full = m * (m + 1) / 2
    ZtZ = cp.ZtZ
    capacity = int(pairs) + (ZtZ.indptr[-1] - ZtZ.indptr[q1]) + m  # the pairs, A22's entries, the diagonal
    ptr, rows = kernels.schur_lower_pattern(ZtZ.indptr.astype(np.int64), ZtZ.indices.astype(np.int64), q1, capacity)

    def fill(ptr, rows):
        total, counts = kernels.column_counts(ptr, rows, kernels.etree(ptr, rows), enough * full)
        return enough if len(counts) == 0 else min(float(total) / full, enough)

    natural = fill(ptr, rows)
    if natural < enough or m < REORDER_MIN_ORDER:
        return natural
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    lower = sp.csc_matrix((np.ones(len(rows)), rows, ptr), shape=(m, m))
    sym = (lower + lower.T).tocsr()
    perm = reverse_cuthill_mckee(sym, symmetric_mode=True)
    reordered = sp.tril(sym[perm][:, perm]).tocsc()
    reordered.sort_indices()
    return min(natural, fill(reordered.indptr.astype(np.int64), reordered.indices.astype(np.int64)))


def schur_pairs(layout: Layout, cp: Crossprod) -> float:
    """Pairs of rows in the columns of L21 (Σ_c n_c(n_c + 1)/2, n_c the rows ≥ q1 of column c < q1 of
    Z'Z): the work of the Schur pass and of the gradient's pass over S⁻¹."""
    q1 = int(layout.col_offset[1])
    ZtZ = cp.ZtZ
    tail = np.add.reduceat((ZtZ.indices[:ZtZ.indptr[q1]] >= q1).astype(np.int64), ZtZ.indptr[:q1]) if q1 else []
    tail = np.asarray(tail, dtype=float)
    return float((tail * (tail + 1)).sum()) / 2


#: The Schur pass and the solves run in parallel from this many pairs of rows
#: of L21 (about 10 ms serially): below it, threads cost more than they save
#: (InstEval, 1.3e6 pairs: fit 0.48 s serial, 0.56–0.76 s parallel).
PARALLEL_MIN_PAIRS = 1e7

STORAGES = ("full", "packed")

#: Storage by default: packed from this order of the dense block (or wherever only packed fits).
PACKED_MIN_ORDER = 4000


def dense_order(layout: Layout) -> int:
    """The order m of the dense block S left after the first term."""
    return layout.q - int(layout.col_offset[1])


def dense_bytes(layout: Layout, storage: str) -> float:
    """Bytes of the blocked backend's dense arrays: S's factor, S⁻¹ and (full storage, scalar first
    term) the gradient's Gram matrix; S⁻¹ in half the space when packed."""
    m = float(dense_order(layout))
    if storage == "packed":
        return DENSE_BYTES_PER_ENTRY * (m * m + m * (m + 1) / 2)
    return DENSE_BYTES_PER_ENTRY * m * m * (3 if layout.p[0] == 1 else 2)


def choose_storage(layout: Layout, limit: float) -> str:
    """Packed from :data:`PACKED_MIN_ORDER`, or where full storage would not fit ``limit`` bytes."""
    return "packed" if dense_order(layout) >= PACKED_MIN_ORDER or dense_bytes(layout, "full") > limit else "full"


class BlockedBackend(ProfiledBackend):
    """Blocked Cholesky backend for crossed designs with a moderate trailing block.

    Parameters
    ----------
    layout : Layout
        Random-effect terms; the first one (most levels) is eliminated in closed form.
    cp : Crossprod
        Crossproducts of [Z X y].
    reml : bool
        REML criterion (True) or ML deviance (False).
    max_memory : float, optional
        Bytes the dense arrays may use (:func:`dense_bytes`); by default the available memory.
    storage : {"full", "packed"}, optional
        How S⁻¹ is held (see the module's notes); by default :func:`choose_storage`.
    parallel : bool, optional
        Run the Schur pass and the solves on every core; by default from
        PARALLEL_MIN_PAIRS pairs of rows of L21.
    """

    name = "blocked"
    blas_threads = None  # the dense factor and inverse, LAPACK on every core

    def __init__(self, layout: Layout, cp: Crossprod, reml: bool = True, max_memory: float | None = None,
                 storage: str | None = None, parallel: bool | None = None):
        super().__init__(layout, cp, reml)
        q1, p1 = int(layout.col_offset[1]), int(layout.p[0])
        m = layout.q - q1
        limit = memory_limit(max_memory)
        storage = choose_storage(layout, limit) if storage is None else storage
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
        self._pairs = schur_pairs(layout, cp)
        self._q1, self._p1, self._m, self.storage = q1, p1, m, storage
        self._check_memory(limit)
        self._rfp = storage == "packed"
        lptr, lidx, self._ptr, self._src, self._t1, self._t2 = _lower_pattern(layout, cp)
        self._lptr, self._lidx = lptr.astype(np.int64), lidx.astype(np.int32)
        if not kernels.blocked_pattern_ok(self._lptr, self._lidx, q1, p1):
            raise ValueError("Z'Z's pattern does not have whole level blocks for the first term")
        self._rptr, self._rpos, self._rcol = kernels.blocked_rows(self._lptr, self._lidx, q1, m)  # L21 by rows
        self._rval = np.empty(len(self._rpos))  # L21's values by rows, refilled by each Schur pass
        self._aval = np.empty(len(lidx))
        self._lval = np.zeros(len(lidx))
        self._allocate_dense()
        self._zval = np.empty(len(lidx))
        self._work = np.empty((q1 // p1, p1, p1))
        self._rhs = cp.ZtXy
        parallel = self._pairs >= PARALLEL_MIN_PAIRS if parallel is None else parallel
        self._nchunks = 8 * kernels.num_threads() if parallel else 1
        # no thread pool started below the threshold, to spin against LAPACK's
        self._schur, self._fwd, self._bwd, self._inv = (
            k if parallel else kernels.serial(k)
            for k in (kernels.blocked_schur, kernels.blocked_forward, kernels.blocked_backward, kernels.blocked_inverse))
        self._inv_chunks = kernels.num_threads() if parallel else 1  # an accumulator of nnz(L21) each
        self._z22_theta = self._inverse_theta = None

    def _check_memory(self, limit: float) -> None:
        """Refuse a dense block that would not fit ``limit`` bytes, before any numeric work."""
        nbytes = dense_bytes(self.layout, self.storage)
        if nbytes > limit:
            layout, m = self.layout, self._m
            rest = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in layout.terms[1:])
            seconds = blocked_iteration_seconds(m, self._pairs, layout.q)
            refuse(f"The dense block of order {m:,} after {layout.terms[0].group} (terms {rest}; some "
                   f"{format_seconds(seconds)} an iteration on this machine)", nbytes, limit,
                   "Use backend='sparse', or fewer levels in the smaller crossed factors.")

    def _allocate_dense(self) -> None:
        """S (its factor in place), S⁻¹ and the Gram matrix M, in the process's memory."""
        m = self._m
        self._S = np.empty((m, m), order="F")
        # S⁻¹'s lower triangle, flat (kernels.blocked_inverse): a view of an m × m array, or packed
        self._Z22 = None if self._rfp else np.empty((m, m), order="F")
        self._Z = np.empty(m * (m + 1) // 2) if self._rfp else self._Z22.reshape(-1, order="F")
        # the weighted Gram matrix of the gradient (scalar first term, full storage), made with S
        # (else M is not formed: a dummy, Fortran-ordered as the real one so that the Schur kernel
        # has one compiled signature; an empty array would be typed C-ordered)
        self._gram = self._p1 == 1 and not self._rfp
        self._M = np.empty((m, m) if self._gram else (2, 2), order="F")

    def estimate(self) -> Estimate:
        work = sum(a.nbytes for a in (self._lptr, self._lidx, self._ptr, self._src, self._t1, self._t2, self._rptr,
                                      self._rpos, self._rcol, self._rval, self._aval, self._lval, self._zval))
        return Estimate(dense_bytes(self.layout, self.storage) + work,
                        blocked_iteration_seconds(self._m, self._pairs, self.layout.q))

    def describe(self) -> str:
        return (f"blocked backend: {self.layout.terms[0].group} eliminated, a dense block of order "
                f"{self._m:,} ({self.storage} storage)")

    def _leading(self, theta) -> float:
        """A's values at θ, and L11, L21 into ``_lval``; returns log|A11|."""
        kernels.lambda_map_apply(self._ptr, self._src, self._t1, self._t2, theta, self.cp.ZtZ.data, self._aval)
        return kernels.blocked_leading(self._lptr, self._lidx, self._aval, self._q1, self._p1, self._lval)

    def _factor(self, theta):
        lptr, lidx, q1, p1 = self._lptr, self._lidx, self._q1, self._p1
        logdet = self._leading(theta)
        self._w = 1.0 / self._lval[lptr[:q1]] ** 2 if self._gram else np.zeros(0)  # 1 / L11², the weights of M
        self._schur(lptr, lidx, self._aval, self._lval, q1, self._rptr, self._rpos, self._rcol, self._w, self._S,
                    self._M, self._rval, self._nchunks)
        cholesky(self._S, lower=True)
        logdet += 2.0 * np.log(np.diagonal(self._S)).sum()
        self._z22_theta = self._inverse_theta = None
        C = self._forward(self.layout.lambda_t_times(theta, self._rhs))
        return logdet, C, C.T @ C

    def _forward(self, B):
        """L⁻¹ B (B: q × k), overwritten."""
        self._fwd(self._lptr, self._lidx, self._lval, self._q1, self._p1, self._rptr, self._rval, self._rcol, B)
        q1 = self._q1
        if B.shape[0] > q1:
            B[q1:] = self._solve_dense(B[q1:])
        return B

    def _back_solve(self, v):
        """L'⁻¹ v (Z's column order: no permutation)."""
        B = np.array(v, dtype=float, order="C")
        if B.ndim == 1:
            return self._back_solve(B[:, None])[:, 0]
        q1 = self._q1
        if B.shape[0] > q1:
            B[q1:] = self._solve_dense(B[q1:], trans=True)
        self._bwd(self._lptr, self._lidx, self._lval, q1, self._p1, B)
        return B

    def _solve_dense(self, B, trans: bool = False):
        """L22⁻¹ B (L22'⁻¹ B with ``trans``), S's factor L22; a new array."""
        return triangular_solve(self._S, B, lower=True, trans=trans)

    def inverse_columns(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self._update(theta)
        E = np.zeros((self.layout.q, len(cols)))
        E[cols, np.arange(len(cols))] = 1.0
        return self._back_solve(self._forward(E))

    def dense_inverse(self, theta: np.ndarray) -> np.ndarray:
        """A⁻¹ dense from S⁻¹ and U = L21 L11⁻¹ (sparse, L21's pattern):

            A⁻¹ = [ A11⁻¹ + U'S⁻¹U   −U'S⁻¹ ]
                  [ −S⁻¹U             S⁻¹   ],

        m · nnz(L21) multiply-adds for S⁻¹U and q1 · nnz(L21) for U'(S⁻¹U), against q (m² + nnz) for
        the solves of q unit columns (InstEval: 0.1 s against 0.6 s)."""
        import scipy.sparse as sp

        self._inverse_S(theta)
        q, q1, p1 = self.layout.q, self._q1, self._p1
        m = q - q1
        if self._rfp:  # every entry through the packed storage's gather
            tail = np.arange(q1, q)
            Sinv = self._gather(np.repeat(tail, m), np.tile(tail, m)).reshape(m, m)
        else:  # the lower triangle dpotri left
            Sinv = np.tril(self._Z22)
            Sinv += np.tril(self._Z22, -1).T
        n1 = self._lptr[q1]
        L1 = sp.csc_matrix((self._lval[:n1], self._lidx[:n1], self._lptr[:q1 + 1]), shape=(q, q1)).tocsr()
        L11, L21 = L1[:q1], L1[q1:]
        base = np.arange(0, q1, p1)
        blocks = np.empty((q1 // p1, p1, p1))
        for a in range(p1):
            for b in range(p1):
                blocks[:, a, b] = np.asarray(L11[base + a, base + b]).ravel()
        P = np.linalg.inv(blocks)  # L11⁻¹, level by level (lower triangular)
        Pmat = sp.block_diag(list(P), format="csr") if p1 > 1 else sp.diags(P[:, 0, 0], format="csr")
        U = (L21 @ Pmat).tocsc()
        out = np.empty((q, q))
        SU = np.asarray(U.T @ Sinv).T  # S⁻¹U (m × q1), S⁻¹ symmetric
        out[q1:, q1:] = Sinv
        out[q1:, :q1] = -SU
        out[:q1, q1:] = -SU.T
        out[:q1, :q1] = np.asarray(U.T @ SU)
        A11inv = np.einsum("lba,lbc->lac", P, P)  # L11⁻ᵀ L11⁻¹ per level
        for a in range(p1):
            for b in range(p1):
                out[base + a, base + b] += A11inv[:, a, b]
        return out

    def _inverse_S(self, theta):
        """S⁻¹'s lower triangle at θ into ``_Z`` (``dpotri``, or ``dpftri`` packed); once per θ."""
        self._update(theta)
        if self._z22_theta is None or not np.array_equal(self._z22_theta, self._theta):
            if self._rfp:
                packed_cholesky_inverse(self._S, self._Z)
            else:
                self._Z22[...] = self._S
                cholesky_inverse(self._Z22, lower=True)
            self._z22_theta = self._theta.copy()
        return self._Z

    def inverse_gather(self, theta: np.ndarray):
        """A function ``gather(rows, cols)`` returning entries of A(θ)⁻¹ on the pattern of Z'Z.

        S⁻¹ from ``dpotri`` (``dpftri``); the first term's columns from
        :func:`kernels.blocked_inverse`. Computed once per θ.
        """
        Z = self._inverse_S(theta)
        if self._inverse_theta is None or not np.array_equal(self._inverse_theta, self._theta):
            self._inv(self._lptr, self._lidx, self._lval, self._q1, self._p1, self._rptr, self._rpos, self._rcol, Z,
                      self._rfp, self._zval, self._work, self._inv_chunks)
            self._inverse_theta = self._theta.copy()
        return self._gather

    def _gather(self, rows, cols):
        """Entries of A⁻¹ from S⁻¹ and (first-term columns) the last :func:`kernels.blocked_inverse`."""
        out = np.empty(len(rows))
        kernels.blocked_gather(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), self._q1,
                               self._Z, self._rfp, self._lptr, self._lidx, self._zval, out)
        return out

    def _level_block_sums(self, theta: np.ndarray) -> list[np.ndarray]:
        """Σ_l A⁻¹_ll per term, without A⁻¹'s first q1 columns when the first term is scalar.

        With p1 = 1, L11 = diag(d) and l_i = L21[:, i]:

            Σ_i A⁻¹_ii = Σ_i (1 + l_i'S⁻¹l_i) / d_i² = Σ_i 1/d_i² + ⟨S⁻¹, Σ_i l_i l_i'/d_i²⟩,

        with M = Σ_i l_i l_i'/d_i² formed with S (:func:`kernels.blocked_schur`)
        and an inner product of two m × m matrices, in place of
        :func:`kernels.blocked_inverse`'s per-level products. The other terms
        read their blocks of S⁻¹. Without M (packed storage), the sums come from
        :meth:`inverse_gather`.
        """
        if not self._gram:
            return super()._level_block_sums(theta)
        self._inverse_S(theta)  # factors at θ first, if need be: M and the weights are θ's
        first = np.array([[self._w.sum() + kernels.lower_inner(self._Z22, self._M)]])
        # the other terms' blocks lie in S⁻¹: the gather reads nothing else
        return [first] + [self._level_blocks(self._gather, k).sum(axis=0) for k in range(1, len(self.layout.terms))]

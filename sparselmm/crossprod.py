"""The crossproducts of [Z X y], computed once.

Everything the profiled likelihood needs is in

    Z'Z (q × q, sparse)   Z'X (q × p)   Z'y (q)   X'X (p × p)   X'y (p)   y'y

(DESIGN.md §2). They are sums over rows, computed in one pass; after that no
step of a fit touches n. Z is never formed: Z'Z is a Gustavson product over
the rows of each level (Numba), since Z has one block per term per row. Z'Z is stored with a *block* pattern: wherever two
levels meet in any row, the whole p_k × p_k' block is stored (with explicit
zeros if need be), so the pattern of Λ'Z'ZΛ never changes with θ; every
level's diagonal block is stored whole, even when its rows are all zero.

The response enters through its least-squares residual e = y − Xγ (γ the OLS
coefficients, kept as ``beta_shift``): the objective is unchanged (r² is
invariant to y → y − Xγ) and β̂ = β̂_e + γ, but the Schur complement
e'e − c_e'c_e no longer subtracts two numbers as large as y'y, which would
cost digits whenever the mean of y is large against its spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import scipy.sparse as sp

from .design import Layout, ReTerm


@dataclass(frozen=True, eq=False)
class Crossprod:
    """Crossproducts of [Z X y] and the row count.

    ``ZtZ`` is the full symmetric matrix in CSC form with sorted indices and
    the block pattern described in the module docstring.
    """

    ZtZ: sp.csc_matrix
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    beta_shift: np.ndarray


@nb.njit(cache=True)
def _rows_by_block(codes, active, boff):
    """The active rows of every level block, grouped (a counting sort): ``(ptr, rows)``."""
    K, n = codes.shape
    counts = np.zeros(boff[K] + 1, dtype=np.int64)
    for k in range(K):
        for r in range(n):
            if active[k, r]:
                counts[boff[k] + codes[k, r] + 1] += 1
    ptr = np.cumsum(counts)
    rows = np.empty(ptr[-1], dtype=np.int64)
    nxt = ptr[:-1].copy()
    for k in range(K):
        for r in range(n):
            if active[k, r]:
                b = boff[k] + codes[k, r]
                rows[nxt[b]] = r
                nxt[b] += 1
    return ptr, rows


@nb.njit(cache=True)
def _ztz_pass(codes, active, X, xoff, p, boff, coff, bterm, ptr, rows, fill, colptr, indices, data):
    """One pass of the block sparse product Z'Z (Gustavson's, a marker per block).

    Block B (level a of term k) meets block B2 when some row is active in
    both; every level's own block is kept. Without ``fill`` returns the
    number of entries; with it, writes the CSC arrays (sorted indices).
    """
    K = codes.shape[0]
    Q = boff[K]
    marker = np.full(Q, -1, dtype=np.int64)
    blist = np.empty(Q, dtype=np.int64)
    pos = np.empty(Q, dtype=np.int64)
    e = 0
    for B in range(Q):
        k = bterm[B]
        nb_ = 1
        marker[B] = B
        blist[0] = B
        for x in range(ptr[B], ptr[B + 1]):
            r = rows[x]
            for k2 in range(K):
                if active[k2, r]:
                    B2 = boff[k2] + codes[k2, r]
                    if marker[B2] != B:
                        marker[B2] = B
                        blist[nb_] = B2
                        nb_ += 1
        blocks = np.sort(blist[:nb_])
        nrows = 0
        for t in range(nb_):
            pos[blocks[t]] = nrows
            nrows += p[bterm[blocks[t]]]
        if fill:
            c0 = coff[k] + (B - boff[k]) * p[k]
            for j in range(p[k]):
                colptr[c0 + j] = e + j * nrows
                for t in range(nb_):
                    B2 = blocks[t]
                    k2 = bterm[B2]
                    for i in range(p[k2]):
                        indices[e + j * nrows + pos[B2] + i] = coff[k2] + (B2 - boff[k2]) * p[k2] + i
            for x in range(ptr[B], ptr[B + 1]):
                r = rows[x]
                for k2 in range(K):
                    if active[k2, r]:
                        B2 = boff[k2] + codes[k2, r]
                        for j in range(p[k]):
                            v = X[r, xoff[k] + j]
                            at = e + j * nrows + pos[B2]
                            for i in range(p[k2]):
                                data[at + i] += v * X[r, xoff[k2] + i]
        e += p[k] * nrows
    if fill:
        colptr[len(colptr) - 1] = e
    return e


@nb.njit(cache=True)
def _ztv(codes, X, xoff, p, coff, V, out):
    """out = Z'V (q × m) for the n × m matrix V."""
    K, n = codes.shape
    for r in range(n):
        for k in range(K):
            c0 = coff[k] + codes[k, r] * p[k]
            for j in range(p[k]):
                v = X[r, xoff[k] + j]
                if v != 0.0:
                    for s in range(V.shape[1]):
                        out[c0 + j, s] += v * V[r, s]


def crossproducts(layout: Layout, X: np.ndarray, y: np.ndarray) -> Crossprod:
    """Compute the crossproducts of [Z X y] for the given terms.

    Parameters
    ----------
    layout : Layout
        The random-effect terms (their codes and model columns).
    X : ndarray, shape (n, p)
        Fixed-effects model matrix.
    y : ndarray, shape (n,)
        Response (entered as its residual from least squares on X).
    """
    gamma = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
    y = y - X @ gamma
    terms: list[ReTerm] = layout.terms
    codes = np.ascontiguousarray(np.vstack([t.codes for t in terms]).astype(np.int64))
    Xz = np.ascontiguousarray(np.hstack([t.X for t in terms]), dtype=float)
    xoff = np.concatenate([[0], np.cumsum(layout.p)]).astype(np.int64)
    # a row links nothing where the term's columns are all zero
    active = np.ascontiguousarray(np.vstack([np.any(t.X != 0, axis=1) for t in terms]))
    boff = np.concatenate([[0], np.cumsum(layout.nlevels)]).astype(np.int64)
    bterm = np.repeat(np.arange(len(terms)), layout.nlevels).astype(np.int64)
    ptr, rows = _rows_by_block(codes, active, boff)
    args = (codes, active, Xz, xoff, layout.p, boff, layout.col_offset, bterm, ptr, rows)
    empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
    nnz = _ztz_pass(*args, False, empty_i, empty_i, empty_f)
    colptr = np.empty(layout.q + 1, dtype=np.int64)
    indices = np.empty(nnz, dtype=np.int64)
    data = np.zeros(nnz)
    _ztz_pass(*args, True, colptr, indices, data)
    if nnz > np.iinfo(np.int32).max:
        raise ValueError(f"Z'Z has {nnz:,} entries: more than 32-bit indices hold")
    ZtZ = sp.csc_matrix((data, indices.astype(np.int32), colptr.astype(np.int32)), shape=(layout.q, layout.q))
    ZtZ.has_sorted_indices = True
    V = np.column_stack([X, y])
    ZtV = np.zeros((layout.q, V.shape[1]))
    _ztv(codes, Xz, xoff, layout.p, layout.col_offset, np.ascontiguousarray(V, dtype=float), ZtV)
    return Crossprod(
        ZtZ=ZtZ,
        ZtX=ZtV[:, :-1].copy(),
        Zty=ZtV[:, -1].copy(),
        XtX=X.T @ X,
        Xty=X.T @ y,
        yty=float(y @ y),
        n=len(y),
        beta_shift=gamma,
    )

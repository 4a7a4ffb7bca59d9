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
coefficients from the normal equations, kept as ``beta_shift``): the objective is unchanged (r² is
invariant to y → y − Xγ) and β̂ = β̂_e + γ, but the Schur complement
e'e − c_e'c_e no longer subtracts two numbers as large as y'y, which would
cost digits whenever the mean of y is large against its spread.

Prior weights scale each row of [Z X y] by √wᵢ before the pass (``weights.whiten``): the
crossproducts are then Z'WZ, Z'WX, ... and the model one of unit residual variance, whose
log-likelihood differs only by the constant Σ log wᵢ (kept as ``log_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from . import kernels
from .design import Layout, ReTerm
from .weights import whiten


#: The passes over the rows run in parallel from this many rows; below, their serial twins, which
#: need no thread pool (nor Numba: see ``kernels``). InstEval's 73,421 rows: 16.4 ms serial, 13.7 ms on
#: two threads.
PARALLEL_MIN_ROWS = 200_000

#: ... and from this many while Numba is not started (``kernels.COLD_MIN_WORK``): the pass over 10⁶
#: rows saves some 6 ms in parallel, against 0.45 s to start Numba.
COLD_MIN_ROWS = 50_000_000


@dataclass(frozen=True, eq=False)
class Crossprod:
    """Crossproducts of [Z X y] and the row count.

    ``ZtZ`` is the full symmetric matrix in CSC form with sorted indices and
    the block pattern described in the module docstring; ``ZtXy`` is Z'[X y]
    (q × (p+1)), of which ``ZtX`` and ``Zty`` are views. With prior weights, each is of the
    rows scaled by √w, and ``log_weights`` is Σ log w (0 without weights).
    """

    ZtZ: sp.csc_matrix
    ZtXy: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    beta_shift: np.ndarray
    log_weights: float = 0.0

    def __add__(self, other: Crossprod) -> Crossprod:
        """The crossproducts of two sets of rows together (the same terms, levels and shift):
        Z'Z's pattern is the union of the two, explicit zeros kept."""
        return Crossprod(ZtZ=_add_patterns(self.ZtZ, other.ZtZ), ZtXy=self.ZtXy + other.ZtXy, XtX=self.XtX + other.XtX,
                         Xty=self.Xty + other.Xty, yty=self.yty + other.yty, n=self.n + other.n,
                         beta_shift=self.beta_shift, log_weights=self.log_weights + other.log_weights)

    @property
    def ZtX(self) -> np.ndarray:
        return self.ZtXy[:, :-1]

    @property
    def Zty(self) -> np.ndarray:
        return self.ZtXy[:, -1]


def _keys(A: sp.csc_matrix) -> np.ndarray:
    """Column-major positions (col · rows + row) of a sorted CSC matrix's entries: increasing."""
    cols = np.repeat(np.arange(A.shape[1], dtype=np.int64), np.diff(A.indptr))
    return cols * A.shape[0] + A.indices


def _add_patterns(A: sp.csc_matrix, B: sp.csc_matrix) -> sp.csc_matrix:
    """A + B on the union of their patterns, explicit zeros kept (scipy's sum drops them).

    B's entries are found in A's by their column-major positions; those A lacks are inserted in
    order (``np.insert``: one pass over A, no sort). Pieces of rows add mostly in place once the
    levels have met.
    """
    ka, kb = _keys(A), _keys(B)
    pos = np.searchsorted(ka, kb)
    found = pos < len(ka)
    found[found] = ka[pos[found]] == kb[found]
    if found.all():
        data, indices, indptr = A.data.copy(), A.indices, A.indptr
    else:
        keys = np.insert(ka, pos[~found], kb[~found])
        data = np.insert(A.data, pos[~found], 0.0)
        pos = np.searchsorted(keys, kb)
        indices = (keys % A.shape[0]).astype(np.int32)
        counts = np.bincount(keys // A.shape[0], minlength=A.shape[1])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    data[pos] += B.data
    out = sp.csc_matrix((data, indices, indptr), shape=A.shape)
    out.has_sorted_indices = True
    return out


def crossproducts(layout: Layout, X: np.ndarray, y: np.ndarray, shift: np.ndarray | None = None,
                  weights: np.ndarray | None = None) -> Crossprod:
    """Compute the crossproducts of [Z X y] for the given terms.

    Parameters
    ----------
    layout : Layout
        The random-effect terms (their codes and model columns).
    X : ndarray, shape (n, p)
        Fixed-effects model matrix.
    y : ndarray, shape (n,)
        Response (entered as its residual from least squares on X).
    shift : ndarray, shape (p,), optional
        γ of y − Xγ, in place of the least-squares one (pieces of one data set share theirs).
    weights : ndarray, shape (n,), optional
        Prior weights (positive): the rows are scaled by their square roots.
    """
    log_weights = 0.0
    if weights is not None:
        sqrtw = np.sqrt(weights)
        X, y = whiten(sqrtw, X, y)
        layout = Layout([replace(t, X=whiten(sqrtw, t.X)[0]) for t in layout.terms])
        log_weights = float(np.log(weights).sum())
    # γ from the normal equations: any γ near the least-squares one centres y (the objective does
    # not depend on γ), and X'X is needed anyway
    XtX = X.T @ X
    if shift is not None:
        gamma = np.asarray(shift, dtype=float)
    else:
        gamma = np.linalg.lstsq(XtX, X.T @ y, rcond=None)[0] if X.shape[1] else np.zeros(0)
    fitted = X @ gamma
    y = np.subtract(y, fitted, out=fitted)  # one n-vector, not two
    terms: list[ReTerm] = layout.terms
    if len(terms) == 1:
        ZtZ, ZtV = _block_diagonal(terms[0], X, y)
    else:
        ZtZ, ZtV = _general(layout, X, y)
    return Crossprod(
        ZtZ=ZtZ,
        ZtXy=ZtV,
        XtX=XtX,
        Xty=X.T @ y,
        yty=float(y @ y),
        n=len(y),
        beta_shift=gamma,
        log_weights=log_weights,
    )


def _parallel(n: int) -> bool:
    return kernels.parallel_pays(n, PARALLEL_MIN_ROWS, COLD_MIN_ROWS)


def _threads(n: int) -> int:
    """Threads of the passes over ``n`` rows: one where the serial twins run (:func:`_parallel`)."""
    return kernels.num_threads() if _parallel(n) else 1


def _kernel(kernel, n: int, size: int = 0):
    """``kernel`` for a pass over ``n`` rows: parallel from PARALLEL_MIN_ROWS (COLD_MIN_ROWS before Numba
    is started), else its serial twin."""
    return kernels.pick(kernel, max(kernels.PARALLEL_MIN_WORK, kernels.COLD_MIN_WORK) if _parallel(n) else 0, size)


def _block_diagonal(t: ReTerm, X: np.ndarray, y: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """Z'Z and Z'[X y] of a single term: one level block per level on the diagonal."""
    n, p, nl = len(y), t.p, t.nlevels
    nthreads = _threads(n)
    starts = np.concatenate([[0], np.flatnonzero(t.codes[1:] != t.codes[:-1]) + 1])  # runs of one level
    grouped = len(starts) == nl and np.bincount(t.codes[starts], minlength=nl).max() == 1
    if grouped:  # one run per level, every level: chunks cut between runs share no level, nor sums
        starts = np.append(starts, n)
        bounds = starts[np.searchsorted(starts, np.linspace(0, n, nthreads + 1))]
        blocks, ZtV = np.empty((1, nl, p, p)), np.empty((1, nl * p, X.shape[1] + 1))
    else:  # each chunk its own sums, and no more chunks than rows per level
        nparts = max(1, min(nthreads, n // nl))
        bounds = np.linspace(0, n, nparts + 1).astype(np.int64)
        blocks, ZtV = np.zeros((nparts, nl, p, p)), np.zeros((nparts, nl * p, X.shape[1] + 1))
    _kernel(kernels.one_term, n, p)(t.codes, np.ascontiguousarray(t.X), X, y, bounds, grouped, blocks, ZtV)
    blocks, ZtV = (blocks[0], ZtV[0]) if len(blocks) == 1 else (blocks.sum(axis=0), ZtV.sum(axis=0))
    q = nl * p
    if q * p > np.iinfo(np.int32).max:
        raise ValueError(f"Z'Z has {q * p:,} entries: more than 32-bit indices hold")
    # every column of level l: the rows l p .. l p + p - 1 of its block
    indices = np.repeat(np.arange(0, q, p, dtype=np.int32), p)[:, None] + np.arange(p, dtype=np.int32)
    colptr = np.arange(0, q * p + 1, p, dtype=np.int32)
    # a block read by columns is itself: it is symmetric
    ZtZ = sp.csc_matrix((blocks.ravel(), indices.ravel(), colptr), shape=(q, q))
    ZtZ.has_sorted_indices = True
    return ZtZ, ZtV


def _general(layout: Layout, X: np.ndarray, y: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """Z'Z (its block pattern by Gustavson's product over the rows gathered by block) and Z'[X y]."""
    terms = layout.terms
    n, K = len(y), len(terms)
    xoff = np.concatenate([[0], np.cumsum(layout.p)]).astype(np.int64)
    boff = np.concatenate([[0], np.cumsum(layout.nlevels)]).astype(np.int64)
    # block of each row in each term (blocks numbered term by term), -1 where the row's term
    # columns are all zero: such a row links nothing; and the terms' model columns side by side
    if boff[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"{boff[-1]:,} levels in all: more than 32-bit indices hold")
    blk = np.empty((n, K), dtype=np.int32)
    Xz = np.empty((n, int(xoff[-1])))
    for k, t in enumerate(terms):
        np.add(t.codes, boff[k], out=blk[:, k])
        blk[~t.active, k] = -1
        Xz[:, xoff[k]:xoff[k + 1]] = t.X
    bterm = np.repeat(np.arange(len(terms)), layout.nlevels).astype(np.int64)
    bsize = layout.p[bterm]
    bcol = np.concatenate([layout.col_offset[k] + np.arange(t.nlevels) * t.p for k, t in enumerate(terms)])
    bcol = bcol.astype(np.int64)
    # row chunks in parallel, each with its own counts and sums: no more chunks than rows per block
    nthreads = _threads(n)
    nchunks = max(1, min(nthreads, n // max(int(boff[-1]), 1)))
    ptr, gblk, gX = _kernel(kernels.rows_by_block, n)(blk, Xz, int(boff[-1]), nchunks)
    # contiguous runs of blocks with equal numbers of gathered rows, one per thread
    bounds = np.searchsorted(ptr, np.linspace(0, ptr[-1], nthreads + 1)).astype(np.int64)
    bounds[0], bounds[-1] = 0, len(ptr) - 1
    counts = _kernel(kernels.block_rows, n)(gblk, bsize, ptr, bounds)
    sizes = bsize * counts
    bstart = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    nnz = int(bstart[-1])
    if nnz > np.iinfo(np.int32).max:
        raise ValueError(f"Z'Z has {nnz:,} entries: more than 32-bit indices hold")
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz)
    _kernel(kernels.block_fill, n)(gblk, gX, xoff, bsize, bterm, bcol, bstart, counts, ptr, bounds, indices, data)
    del gblk, gX
    # column j of block B starts at bstart[B] + j counts[B]; blocks follow Z's column order
    within = np.arange(layout.q) - np.repeat(bcol, bsize)
    colptr = np.append(np.repeat(bstart[:-1], bsize) + within * np.repeat(counts, bsize), nnz)
    ZtZ = sp.csc_matrix((data, indices, colptr.astype(np.int32)), shape=(layout.q, layout.q))
    ZtZ.has_sorted_indices = True
    ZtV = _kernel(kernels.ztv, n)(blk, Xz, xoff, bsize, bcol, X, y, layout.q, nchunks)
    return ZtZ, ZtV

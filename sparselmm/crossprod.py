"""The crossproducts of [Z X y], computed once.

Everything the profiled likelihood needs is in

    Z'Z (q × q, sparse)   Z'X (q × p)   Z'y (q)   X'X (p × p)   X'y (p)   y'y

(DESIGN.md §2). They are sums over rows, computed in one pass; after that no
step of a fit touches n. Z'Z is stored with a *block* pattern: wherever two
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


def build_Z(layout: Layout, values: bool = True) -> sp.csr_matrix:
    """Z as a CSR matrix of shape (n, q); with ``values=False`` a 0/1 block pattern."""
    terms: list[ReTerm] = layout.terms
    n = len(terms[0].codes)
    cols, vals = [], []
    for k, t in enumerate(terms):
        base = layout.col_offset[k] + t.codes.astype(np.int64) * t.p
        cols.append(base[:, None] + np.arange(t.p)[None, :])
        # the pattern: whole blocks, for rows where the term is not all zero
        vals.append(t.X if values else np.repeat(np.any(t.X != 0, axis=1)[:, None], t.p, axis=1).astype(float))
    cols = np.hstack(cols)
    vals = np.hstack(vals)
    nz = cols.shape[1]
    indptr = np.arange(0, n * nz + 1, nz, dtype=np.int64)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, layout.q))


def _level_blocks(layout: Layout) -> sp.csr_matrix:
    """The pattern of every level's diagonal block (ones), even for a level whose rows are all zero."""
    blocks = [sp.kron(sp.identity(nl, format="csr"), np.ones((p, p)), format="csr")
              for p, nl in zip(layout.p, layout.nlevels)]
    return sp.block_diag(blocks, format="csr")


def _on_pattern(pattern: sp.csc_matrix, values: sp.csc_matrix) -> sp.csc_matrix:
    """``values`` placed on ``pattern`` (a superset of its nonzeros)."""
    q = pattern.shape[0]
    pc = pattern.tocoo()
    vc = values.tocoo()
    pkey = pc.col.astype(np.int64) * q + pc.row
    order = np.argsort(pkey)
    vkey = vc.col.astype(np.int64) * q + vc.row
    data = np.zeros(len(pkey))
    data[order[np.searchsorted(pkey[order], vkey)]] = vc.data
    out = sp.csc_matrix((data, (pc.row, pc.col)), shape=pattern.shape)
    out.sort_indices()
    return out


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
    Z = build_Z(layout)
    Zt = Z.T.tocsr()
    # The pattern comes from a 0/1 Z: products of data values may cancel
    # to zero (and scipy drops zeros), but the pattern must hold every block.
    ones = build_Z(layout, values=False)
    pattern = (ones.T.tocsr() @ ones + _level_blocks(layout)).tocsc()
    ZtZ = _on_pattern(pattern, (Zt @ Z).tocsc())
    ZtZ.indices = ZtZ.indices.astype(np.int32)
    ZtZ.indptr = ZtZ.indptr.astype(np.int32)
    return Crossprod(
        ZtZ=ZtZ,
        ZtX=np.asarray(Zt @ X),
        Zty=np.asarray(Zt @ y),
        XtX=X.T @ X,
        Xty=X.T @ y,
        yty=float(y @ y),
        n=len(y),
        beta_shift=gamma,
    )

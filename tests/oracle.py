"""A brute-force dense oracle for the profiled objective, independent of the backends."""

from __future__ import annotations

import numpy as np


def dense_Z(terms) -> np.ndarray:
    """Z built row by row from the terms, level-major inside a term."""
    blocks = []
    for t in terms:
        Zk = np.zeros((len(t.codes), t.nlevels * t.p))
        for i, code in enumerate(t.codes):
            Zk[i, code * t.p:(code + 1) * t.p] = t.X[i]
        blocks.append(Zk)
    return np.hstack(blocks)


def dense_objective(terms, X, y, theta_blocks, reml: bool) -> float:
    """-2 log-likelihood (or REML criterion) profiled over β and σ², from V directly.

    With V = σ² (Z Λ Λ' Z' + I):  β̂ is the GLS estimate, r² its weighted
    residual sum of squares, σ̂² = r²/n (ML) or r²/(n − p) (REML).
    """
    Z = dense_Z(terms)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for t, T in zip(terms, theta_blocks):
        for j in range(t.nlevels):
            Lam[off + j * t.p:off + (j + 1) * t.p, off + j * t.p:off + (j + 1) * t.p] = T
        off += t.nlevels * t.p
    n, p = X.shape
    V0 = Z @ Lam @ Lam.T @ Z.T + np.eye(n)
    Vi = np.linalg.inv(V0)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    e = y - X @ beta
    r2 = e @ Vi @ e
    ld = np.linalg.slogdet(V0)[1]
    if reml:
        nu = n - p
        return ld + np.linalg.slogdet(XtViX)[1] + nu * (1 + np.log(2 * np.pi * r2 / nu))
    return ld + n * (1 + np.log(2 * np.pi * r2 / n))

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


def dense_V0(terms, theta_blocks) -> np.ndarray:
    """V₀ = ZΛΛ'Z' + I (n × n) for the blocks T_k."""
    Z = dense_Z(terms)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for t, T in zip(terms, theta_blocks):
        for j in range(t.nlevels):
            Lam[off + j * t.p:off + (j + 1) * t.p, off + j * t.p:off + (j + 1) * t.p] = T
        off += t.nlevels * t.p
    return Z @ Lam @ Lam.T @ Z.T + np.eye(Z.shape[0])


def dense_approximate_hessian(layout, X, y, theta, reml: bool, even_terms: bool = True) -> np.ndarray:
    """The average-information Hessian of the profiled objective, from n × n matrices.

    V₀ is quadratic in θ, so central differences give V_j and V_jk exactly
    (up to rounding). H_jk = (ν/r²)(y'PV_jPV_kPy − (y'PV_jPy)(y'PV_kPy)/r²),
    r² = y'Py; where θ_j is a diagonal alone in its column of T
    (``even_terms``), plus the exact term tr(PV_jj) − ν y'PV_jjPy/r².
    """
    theta = np.asarray(theta, dtype=float)
    n, p = X.shape
    nt = len(theta)

    def V(t):
        return dense_V0(layout.terms, layout.T(t))

    E = np.eye(nt)
    Vj = [(V(theta + E[j]) - V(theta - E[j])) / 2 for j in range(nt)]
    Vi = np.linalg.inv(V(theta))
    P = Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi) if p else Vi
    Py = P @ y
    r2 = y @ Py
    nu = n - p if reml else n
    w = np.column_stack([Vj[j] @ Py for j in range(nt)])
    rw = Py @ w
    H = nu / r2 * (w.T @ P @ w - np.outer(rw, rw) / r2)
    if even_terms:
        for j in np.flatnonzero(layout.even):
            Vjj = V(theta + E[j]) + V(theta - E[j]) - 2 * V(theta)
            H[j, j] += np.trace((P if reml else Vi) @ Vjj) - nu * Py @ Vjj @ Py / r2
    return H


def dense_objective(terms, X, y, theta_blocks, reml: bool) -> float:
    """-2 log-likelihood (or REML criterion) profiled over β and σ², from V directly.

    With V = σ² (Z Λ Λ' Z' + I):  β̂ is the GLS estimate, r² its weighted
    residual sum of squares, σ̂² = r²/n (ML) or r²/(n − p) (REML).
    """
    n, p = X.shape
    V0 = dense_V0(terms, theta_blocks)
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

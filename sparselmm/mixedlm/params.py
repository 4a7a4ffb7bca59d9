"""statsmodels' MixedLMParams, and the map between its parameters and θ.

statsmodels states the variance parameters relative to the residual
variance ("profile" parameterization): ``cov_re`` = Ψ, the k_re × k_re
relative covariance of the grouped random effects, and ``vcomp``, the
relative variances of the variance components. Packed, they are the lower
triangle of ``cov_re`` in row-major order, then ``vcomp``; with
``use_sqrt`` the lower triangle of the Cholesky factor T of Ψ and √vcomp.

sparselmm's θ holds the same T (column-major, lme4's order) and √vcomp:
Ψ = TT' and vcomp = θ_vc². ``MixedLMParams`` is statsmodels' own class.
"""

from __future__ import annotations

import numpy as np
from statsmodels.regression.mixed_linear_model import MixedLMParams

__all__ = ["MixedLMParams", "ThetaMap", "psd_factor"]


def psd_factor(S: np.ndarray) -> np.ndarray:
    """A lower-triangular T with TT' = S for a positive semi-definite S.

    The Cholesky factor when S is positive definite; otherwise the L of an
    LQ decomposition of a symmetric square root (T has a zero diagonal
    entry where S is singular). Raises ValueError if S is not PSD.
    """
    if S.size == 0:
        return np.zeros_like(S)
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        pass
    w, Q = np.linalg.eigh((S + S.T) / 2)
    if w.min() < -1e-10 * max(1.0, abs(w).max()):
        raise ValueError("cov_re is not positive semi-definite")
    M = Q * np.sqrt(np.clip(w, 0.0, None))
    R = np.linalg.qr(M.T, mode="r")  # M = R' Q'  → MM' = R'R
    T = R.T
    return T * np.where(np.diag(T) < 0, -1.0, 1.0)  # non-negative diagonal


class ThetaMap:
    """θ of sparselmm ↔ statsmodels' packed variance parameters.

    θ = [T column-major lower triangle, √vcomp]; statsmodels' square-root
    packing is [T row-major lower triangle, √vcomp].
    """

    def __init__(self, k_re: int, k_vc: int):
        self.k_re, self.k_vc = k_re, k_vc
        rows, cols = np.tril_indices(k_re)  # row-major order
        order = sorted(range(len(rows)), key=lambda i: (cols[i], rows[i]))  # column-major
        self.row_major_to_theta = np.array(order, dtype=np.int64)  # θ[i] = sqrt_packed[order[i]]
        self.k_re2 = len(rows)

    def theta_from_sqrt(self, packed_sqrt: np.ndarray) -> np.ndarray:
        packed_sqrt = np.asarray(packed_sqrt, dtype=float)
        re = packed_sqrt[:self.k_re2][self.row_major_to_theta]
        return np.concatenate([re, packed_sqrt[self.k_re2:]])

    def sqrt_from_theta(self, theta: np.ndarray) -> np.ndarray:
        out = np.empty(len(theta))
        out[self.row_major_to_theta] = theta[:self.k_re2]
        out[self.k_re2:] = theta[self.k_re2:]
        return out

    def theta_from_params(self, params: MixedLMParams) -> np.ndarray:
        vcomp = np.asarray(params.vcomp, dtype=float)
        if np.any(vcomp < 0):
            raise ValueError("variance components must be non-negative")
        T = psd_factor(np.asarray(params.cov_re, dtype=float))
        return self.theta_from_sqrt(np.concatenate([T[np.tril_indices(self.k_re)], np.sqrt(vcomp)]))

    def params_from_theta(self, theta: np.ndarray, fe_params=None) -> MixedLMParams:
        T = np.zeros((self.k_re, self.k_re))
        T[np.tril_indices(self.k_re)] = self.sqrt_from_theta(theta)[:self.k_re2]
        return MixedLMParams.from_components(fe_params, cov_re_sqrt=T, vcomp=np.asarray(theta[self.k_re2:]) ** 2)

    def user_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """∂(packed user parameters)/∂θ: rows [lower(Ψ) row-major, vcomp], columns θ."""
        k, k2 = self.k_re, self.k_re2
        J = np.zeros((k2 + self.k_vc, len(theta)))
        T = np.zeros((k, k))
        rows, cols = np.tril_indices(k)
        T[rows, cols] = self.sqrt_from_theta(theta)[:k2]
        for t in range(k2):  # θ index t ↔ T[a, b]
            a, b = rows[self.row_major_to_theta[t]], cols[self.row_major_to_theta[t]]
            E = np.zeros((k, k))
            E[a, b] = 1.0
            dPsi = E @ T.T + T @ E.T
            J[:k2, t] = dPsi[rows, cols]
        for v in range(self.k_vc):
            J[k2 + v, k2 + v] = 2.0 * theta[k2 + v]
        return J

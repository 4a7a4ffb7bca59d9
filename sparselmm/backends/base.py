"""What every backend provides, and the profiled objective they share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.linalg import solve_triangular


@dataclass(frozen=True)
class Solution:
    """The conditional solution at one θ (DESIGN.md §2).

    Attributes
    ----------
    theta : ndarray
        The θ it was computed at.
    objective : float
        ML deviance or REML criterion.
    beta : ndarray, shape (p,)
        Fixed effects β̂(θ).
    u : ndarray, shape (q,)
        Spherical random effects û(θ); the random effects are b̂ = Λθ û.
    pwrss : float
        Penalized residual sum of squares r².
    RX : ndarray, shape (p, p)
        Upper-triangular factor with RX'RX = X'V⁻¹X (σ² factored out).
    sigma2 : float
        Residual variance estimate σ̂² (r²/n for ML, r²/(n-p) for REML).
    """

    theta: np.ndarray
    objective: float
    beta: np.ndarray
    u: np.ndarray
    pwrss: float
    RX: np.ndarray
    sigma2: float


class Backend(Protocol):
    """A solver for one model: θ in, objective and solution out."""

    def objective(self, theta: np.ndarray) -> float:
        """ML deviance or REML criterion at θ."""

    def solution(self, theta: np.ndarray) -> Solution:
        """Objective, β̂, û, σ̂² and RX at θ."""

    def cond_var(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the diagonal blocks of Λ A⁻¹ Λ' (shape ℓ_k × p_k × p_k)."""


def profiled_objective(logdet_A: float, logdet_RX2: float, pwrss: float, n: int, p: int, reml: bool) -> float:
    """The profiled deviance (ML) or REML criterion (Bates et al. 2015, eqs. 34 and 41).

        ML:    log|L|² + n (1 + log(2π r² / n))
        REML:  log|L|² + log|RX|² + (n − p)(1 + log(2π r² / (n − p)))
    """
    if reml:
        nu = n - p
        return logdet_A + logdet_RX2 + nu * (1.0 + math.log(2.0 * math.pi * pwrss / nu))
    return logdet_A + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))


def schur_factor(G: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Upper Cholesky factor of the (p+1) × (p+1) Schur complement of [X y].

    Returns ``(RX, beta, pwrss)``: RX'RX = X'V⁻¹X, β̂ = RX⁻¹ (RX'⁻¹ X'V⁻¹y),
    r² = the last diagonal entry squared.
    """
    R = np.linalg.cholesky(G).T
    RX = R[:p, :p]
    beta = solve_triangular(RX, R[:p, p]) if p else np.zeros(0)
    return RX, beta, float(R[p, p] ** 2)

"""What every backend provides, and the profiled objective they share.

A backend factors A(θ) = Λθ'Z'ZΛθ + I and solves

    L C = (P) Λθ' Z'[X y]

in its own way (one sparse factor, or dense blocks per group). Everything
else is common and lives in :class:`ProfiledBackend`: the (p+1) × (p+1)
Schur complement [X y]'[X y] − C'C = R'R, whose upper factor holds RX, β̂
and r (the augmented system of DESIGN.md §2), the profiled objective, and
the back-substitution for û.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from ..cost import Estimate
from ..crossprod import Crossprod
from ..design import Layout


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


def profiled_objective(logdet_A: float, logdet_RX2: float, pwrss: float, n: int, p: int, reml: bool,
                       log_weights: float = 0.0) -> float:
    """The profiled deviance (ML) or REML criterion (Bates et al. 2015, eqs. 34 and 41), less
    Σ log w of prior weights (lme4's ``ldW``; r² is then the weighted one):

        ML:    log|L|² + n (1 + log(2π r² / n)) − Σ log w
        REML:  log|L|² + log|RX|² + (n − p)(1 + log(2π r² / (n − p))) − Σ log w
    """
    if reml:
        nu = n - p
        return logdet_A + logdet_RX2 + nu * (1.0 + math.log(2.0 * math.pi * pwrss / nu)) - log_weights
    return logdet_A + n * (1.0 + math.log(2.0 * math.pi * pwrss / n)) - log_weights


class ProfiledBackend:
    """The part of a backend that does not depend on how A(θ) is factored.

    Subclasses implement ``_factor(theta) -> (log|A|, C, C'C)``,
    ``_back_solve(v) -> L'⁻¹ v`` mapped back to Z's column order,
    ``inverse_gather(theta)``, and ``_forward(B) -> L⁻¹ P B`` (rows in the
    factor's order, as C's) unless they specialize ``_information_pieces``;
    they may specialize ``_gradient_pieces`` and ``_level_block_sums``.
    """

    #: Threads for the system BLAS during a fit (``lapack.fit_blas_threads``; None: all cores).
    blas_threads: int | None = 1

    def __init__(self, layout: Layout, cp: Crossprod, reml: bool):
        self.layout, self.cp, self.reml = layout, cp, reml
        Xy = np.append(cp.Xty, cp.yty)
        self._G = np.block([[cp.XtX, cp.Xty[:, None]], [Xy[None, :]]])
        self._theta = self._sums = self._grad = None
        self.nfactor = 0

    @property
    def p(self) -> int:
        return self.cp.XtX.shape[0]

    def estimate(self) -> Estimate:
        """Bytes and seconds an iteration on this machine, from structure alone (before any factorization)."""
        raise NotImplementedError

    def describe(self) -> str:
        """What this backend factors, in a few words."""
        return f"{self.name} backend"

    def set_response(self, Zty: np.ndarray, Xty: np.ndarray, yty: float, beta_shift: np.ndarray) -> None:
        """Another response on the same design (a bootstrap replicate): Z'y, X'y, y'y of y − X·beta_shift
        replace the stored ones in place; Z, Z'Z, Z'X and the symbolic analysis stay."""
        self.cp.ZtXy[:, -1] = Zty
        self.cp.Xty[:] = Xty
        object.__setattr__(self.cp, "yty", float(yty))
        object.__setattr__(self.cp, "beta_shift", np.asarray(beta_shift, dtype=float))
        self._G[:-1, -1] = self._G[-1, :-1] = Xty
        self._G[-1, -1] = yty
        self._load_response()
        self._theta = self._sums = None

    def _load_response(self) -> None:
        """Backends that keep their own copy of Z'y refresh it here."""

    def _factor(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _forward(self, B: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _back_solve(self, v: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _update(self, theta):
        """Factor at θ (cached for the last θ): log|A|, C, RX, β̂, r²."""
        theta = np.asarray(theta, dtype=float)
        if self._theta is not None and np.array_equal(theta, self._theta):
            return self._state
        self._theta = None  # the buffers are about to change: nothing is cached if the factorization fails
        logdet, C, CtC = self._factor(theta)
        self.nfactor += 1
        R = np.linalg.cholesky(self._G - CtC).T
        p = self.p
        RX = R[:p, :p]
        beta = (solve_triangular(RX, R[:p, p]) if p else np.zeros(0)) + self.cp.beta_shift
        self._theta = theta.copy()
        self._state = (logdet, C, RX, beta, float(R[p, p] ** 2))
        self._uhat = None
        return self._state

    def _spherical(self, theta: np.ndarray) -> np.ndarray:
        """û(θ), kept for the last θ."""
        beta = self._update(theta)[3]
        if self._uhat is None:
            self._uhat = self.spherical_at(theta, beta)
        return self._uhat

    def spherical_at(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """The conditional mode û at θ for given fixed effects β: A⁻¹Λ'Z'(y − Xβ)."""
        _, C, _, _, _ = self._update(theta)
        p = self.p
        return self._back_solve(C[:, p] - C[:, :p] @ (np.asarray(beta, dtype=float) - self.cp.beta_shift))

    def objective(self, theta: np.ndarray) -> float:
        """ML deviance or REML criterion at θ."""
        logdet, _, RX, _, pwrss = self._update(theta)
        ld_rx = 2.0 * np.log(np.abs(np.diag(RX))).sum()
        return profiled_objective(logdet, ld_rx, pwrss, self.cp.n, self.p, self.reml, self.cp.log_weights)

    def solution(self, theta: np.ndarray) -> Solution:
        """Objective, β̂, û, σ̂² and RX at θ."""
        _, _, RX, beta, pwrss = self._update(theta)
        p, n = self.p, self.cp.n
        return Solution(
            theta=np.array(theta, dtype=float),
            objective=self.objective(theta),
            beta=beta,
            u=self._spherical(theta),
            pwrss=pwrss,
            RX=RX,
            sigma2=pwrss / (n - p if self.reml else n),
        )

    def em_step(self, theta: np.ndarray) -> np.ndarray:
        """One EM update of θ (Lindstrom and Bates 1988), for a warm start.

        With b̂ = Λû and the conditional covariance blocks σ²(ΛA⁻¹Λ')_ll,

            Ψ_k ← (1/ℓ_k) Σ_l (b̂_l b̂_l' / σ̂² + (ΛA⁻¹Λ')_ll),   T_k ← chol(Ψ_k)

        (the ML form; the fixed effects' uncertainty is ignored, which is
        harmless for a starting value). Diagonal terms keep only diag(Ψ_k).
        """
        layout = self.layout
        sol = self.solution(theta)
        b = layout.lambda_times(theta, sol.u)
        out = np.empty(layout.ntheta)
        sums = self.level_block_sums(theta)
        for k, (term, T) in enumerate(zip(layout.terms, layout.T(theta))):
            bk = b[layout.col_offset[k]:layout.col_offset[k + 1]].reshape(term.nlevels, term.p)
            Psi = (bk.T @ bk / sol.sigma2 + T @ sums[k] @ T.T) / term.nlevels
            if term.diagonal:
                T = np.diag(np.sqrt(np.diag(Psi)))
            else:
                w, Q = np.linalg.eigh(Psi)  # a PSD square root, then its lower-triangular form
                T = np.linalg.qr((Q * np.sqrt(np.clip(w, 0.0, None))).T, mode="r").T
                T = T * np.where(np.diag(T) < 0, -1.0, 1.0)
            idx = term.theta_index()
            out[layout.theta_offset[k] + idx[idx >= 0]] = T[idx >= 0]
        return out

    def weighted_rss(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """(y − Xβ)'V₀⁻¹(y − Xβ) = r² + |RX(β − β̂)|² at a given β."""
        _, _, RX, beta_hat, pwrss = self._update(theta)
        d = RX @ (np.asarray(beta, dtype=float) - beta_hat)
        return pwrss + d @ d

    def objective_at(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """The objective at a given β (r² replaced by :meth:`weighted_rss`)."""
        logdet, _, RX, _, _ = self._update(theta)
        ld_rx = 2.0 * np.log(np.abs(np.diag(RX))).sum()
        return profiled_objective(logdet, ld_rx, self.weighted_rss(theta, beta), self.cp.n, self.p, self.reml,
                                  self.cp.log_weights)

    def objective_gradient_beta(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """∂/∂β of :meth:`objective_at`: 2ν RX'RX (β − β̂) / wrss."""
        _, _, RX, beta_hat, _ = self._update(theta)
        nu = self.cp.n - self.p if self.reml else self.cp.n
        return 2.0 * nu * RX.T @ (RX @ (np.asarray(beta, dtype=float) - beta_hat)) / self.weighted_rss(theta, beta)

    def gradient(self, theta: np.ndarray, beta: np.ndarray | None = None) -> np.ndarray:
        """∂objective/∂θ, analytic (DESIGN.md §4).

        With ``beta`` given, the gradient of the objective at that β instead
        of the profiled β̂(θ) (r² replaced by the weighted residual sum of
        squares at β; the REML log|RX|² term kept).

            ∂/∂θ_j = 2 tr(A⁻¹Λ'Z'ZΛ_j) [− 2 tr((RX'RX)⁻¹ D_j)]_REML + ν ∂r²/∂θ_j / r²

        with ν = n (ML) or n − p (REML); see :meth:`_gradient_pieces`.
        """
        _, _, RX, beta_hat, _ = self._update(theta)
        if beta is None and self._grad is not None and self._grad[0] is self._theta:
            return self._grad[1].copy()  # kept for the last factor's θ: the fit's last is Satterthwaite's first
        p, n = self.p, self.cp.n
        profiled = beta is None
        beta = beta_hat if beta is None else np.asarray(beta, dtype=float)
        qf = self.weighted_rss(theta, beta)
        beta_e = beta - self.cp.beta_shift  # coordinates of the shifted response
        u = self._spherical(theta) if beta is beta_hat else self.spherical_at(theta, beta)
        tr, r2, D = self._gradient_pieces(np.asarray(theta, dtype=float), beta_e, u)
        if not self.reml:
            g = 2.0 * tr + n * r2 / qf
        else:
            Rinv = solve_triangular(RX, np.eye(p)) if p else np.zeros((0, 0))
            g = 2.0 * tr - 2.0 * np.einsum("rs,jsr->j", Rinv @ Rinv.T, D) + (n - p) * r2 / qf
        if profiled:
            self._grad = (self._theta, g.copy())
        return g

    def approximate_hessian(self, theta: np.ndarray, gradient: np.ndarray | None = None) -> np.ndarray:
        """An approximation of the objective's Hessian in θ from one factorization: the average
        information (Gilmour, Thompson and Cullis 1995) with σ² profiled out, plus the exact
        second-derivative term of the θ_j the objective is even in.

        The observed information of −2 log L in θ is

            −tr(PV_jPV_k) + 2 y'PV_jPV_kPy/σ² + tr(PV_jk) − y'PV_jkPy/σ²,

        V = I + ZΛΛ'Z', V_j = ∂V/∂θ_j, P = V⁻¹ − V⁻¹X(X'V⁻¹X)⁻¹X'V⁻¹. The
        first two terms are replaced by the average of their value and their
        expectation over y ~ N(Xβ, σ²V), y'PV_jPV_kPy/σ² (the average
        information); profiling σ² = r²/ν (ν = n − p for REML, n for ML) then
        gives

            H_jk = (ν / r²) (w_j'P w_k − (r'w_j)(r'w_k) / r²),   w_j = V_j P y.

        With r = P y = y − Xβ̂ − ZΛû and Λ'Z'r = û, w_j = Z c_j with
        c_j = Λ_j û + ΛΛ_j'Z'r, and w'P w is a penalized least-squares
        residual: w_j'w_k − z_j'z_k, z_j the forward solve of [Λ'Z'w_j; X'w_j]
        through the factor of the augmented system: crossproducts and dim θ
        forward solves, no n-vector and no new factorization. Where the
        objective is even in θ_j (a diagonal alone in its column of T_k),
        V_jj = V_j/θ_j, so the last two terms are ∂objective/∂θ_j / θ_j
        (``gradient``, if given): the curvature of a variance near zero,
        which the average information misses (it vanishes there as θ_j²).
        """
        _, _, RX, beta_hat, pwrss = self._update(theta)
        ww, xw, rw = self._information_pieces(theta, beta_hat - self.cp.beta_shift, self._spherical(theta))
        zx = solve_triangular(RX, xw, trans="T") if self.p else xw
        nu = self.cp.n - self.p if self.reml else self.cp.n
        H = nu / pwrss * (ww - zx.T @ zx - np.outer(rw, rw) / pwrss)
        H = (H + H.T) / 2
        if gradient is not None:
            theta = np.asarray(theta, dtype=float)
            even = self.layout.even & (theta != 0)
            H[even, even] += gradient[even] / theta[even]
        return H

    def _ztr(self, theta, beta, u):
        """Z'r = Z'y − Z'Xβ − Z'ZΛu (β in the stored response's coordinates)."""
        cp = self.cp
        return cp.Zty - cp.ZtX @ beta - cp.ZtZ @ self.layout.lambda_times(theta, u)

    def _information_pieces(self, theta, beta, u):
        """The sums of :meth:`approximate_hessian` (β in the stored response's coordinates, u = û):
        ``ww = c'Z'Zc − z'z``, ``xw = X'Zc − C_X'z`` and ``rw = c'Z'r`` for the columns c_j, z_j."""
        cp, layout, p = self.cp, self.layout, self.p
        _, C, _, _, _ = self._update(theta)
        ztr = self._ztr(theta, beta, u)
        nt = layout.ntheta
        c, d = np.zeros((layout.q, nt)), np.zeros((layout.q, nt))
        for j in range(nt):
            ca, cb = layout.theta_columns(j)
            c[ca, j] = u[cb]  # Λ_j û
            d[cb, j] = ztr[ca]  # Λ_j'Z'r
        c += layout.lambda_times(theta, d)
        ztw = cp.ZtZ @ c  # Z'w_j
        z = self._forward(np.ascontiguousarray(layout.lambda_t_times(theta, ztw)))
        return c.T @ ztw - z.T @ z, cp.ZtX.T @ c - C[:, :p].T @ z, ztr @ c

    def _gradient_pieces(self, theta, beta, u, traces: bool = True):
        """The three sums of the gradient, for every θ_j (Λ_j = ∂Λ/∂θ_j), with
        β in the coordinates of the stored (shifted) response (``tr`` is None
        when ``traces`` is false: the other two are cheap):

        * ``tr[j] = tr(A⁻¹ Λ'Z'Z Λ_j)``                 (half of ∂log|A|/∂θ_j)
        * ``r2[j] = −2 (Z'y − Z'Xβ − Z'ZΛu)' Λ_j u``       (∂r²/∂θ_j at fixed β)
        * ``D[j]  = (Λ_j'Z'V₀⁻¹X)' A⁻¹Λ'Z'X``              (∂(X'V₀⁻¹X)/∂θ_j = −(D + D'))

        using Λ'Z'V₀⁻¹X = A⁻¹Λ'Z'X and Z'V₀⁻¹X = Z'X − Z'ZΛA⁻¹Λ'Z'X. The
        trace needs A⁻¹ only on the level blocks of the diagonal (see
        :meth:`_trace_terms`).
        """
        cp, layout, p = self.cp, self.layout, self.p
        _, C, _, _, _ = self._update(theta)
        Lam = layout.lambda_matrix(theta)
        MX = self._back_solve(C[:, :p]) if p else np.zeros((layout.q, 0))
        B = cp.ZtX - cp.ZtZ @ (Lam @ MX)
        res = self._ztr(theta, beta, u)
        nt = layout.ntheta
        r2, D = np.zeros(nt), np.zeros((nt, p, p))
        for j in range(nt):
            ca, cb = layout.theta_columns(j)
            r2[j] = -2.0 * res[ca] @ u[cb]
            D[j] = B[ca].T @ MX[cb]
        return (self._trace_terms(theta, Lam) if traces else None), r2, D

    def _trace_terms(self, theta, Lam) -> np.ndarray:
        """tr(A⁻¹ Λ'Z'Z Λ_j) for every θ_j.

        Where T_k is nonsingular, Λ'Z'ZΛ = A − I gives (DESIGN.md §4)

            tr(A⁻¹Λ'Z'ZΛ_j) = tr(Λ⁻¹Λ_j) − tr(A⁻¹Λ⁻¹Λ_j),   Λ⁻¹Λ_j = I_ℓ ⊗ T_k⁻¹E_ab,

        which needs only the level blocks A⁻¹_ll:  ℓ_k (T_k⁻¹)[b, a] −
        Σ_l (A⁻¹_ll T_k⁻¹)[b, a]. A term with a singular T_k (θ on the
        boundary) takes the general form Σ_l Σ_c A⁻¹[c_l(b), c] (Λ'Z'Z)[c, c_l(a)],
        which needs A⁻¹ on the pattern of Z'Z.
        """
        layout = self.layout
        tr = np.zeros(layout.ntheta)
        K = gather = sums = None
        for k, T in enumerate(layout.T(theta)):
            nl = layout.nlevels[k]
            js = range(layout.theta_offset[k], layout.theta_offset[k + 1])
            if np.all(np.abs(np.diag(T)) > 0):
                if sums is None:
                    sums = self.level_block_sums(theta)
                Tinv = np.linalg.inv(T)
                W = sums[k] @ Tinv  # Σ_l A⁻¹_ll T⁻¹
                for j in js:
                    ca, cb = layout.theta_columns(j)
                    ia, ib = ca[0] - layout.col_offset[k], cb[0] - layout.col_offset[k]
                    tr[j] = nl * Tinv[ib, ia] - W[ib, ia]
            else:
                if K is None:
                    K = (Lam.T @ self.cp.ZtZ).tocsc()  # Λ'Z'Z
                    gather = self.inverse_gather(theta)
                for j in js:
                    ca, cb = layout.theta_columns(j)
                    Kj = K[:, ca].tocoo()  # entries K[c, c(a)_l], l = Kj.col
                    tr[j] = Kj.data @ gather(cb[Kj.col], Kj.row)
        return tr

    def inverse_columns(self, theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whole columns ``cols`` of A(θ)⁻¹ (q × len(cols), dense): L'⁻¹ L⁻¹ E."""
        raise NotImplementedError

    def dense_inverse(self, theta: np.ndarray) -> np.ndarray:
        """A(θ)⁻¹ as a dense q × q array (Kenward–Roger: moderate q only)."""
        return self.inverse_columns(theta, np.arange(self.layout.q))

    def inverse_gather(self, theta: np.ndarray):
        """A function ``gather(rows, cols)`` returning entries of A(θ)⁻¹.

        Entries must lie on the pattern of Z'Z (or of the factor).
        """
        raise NotImplementedError

    def _level_blocks(self, gather, k: int) -> np.ndarray:
        """The blocks A⁻¹_ll of term k's levels (ℓ_k × p_k × p_k), through ``gather``."""
        p, nl = self.layout.p[k], self.layout.nlevels[k]
        base = self.layout.col_offset[k] + np.arange(nl) * p
        a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        rows = (base[:, None, None] + a[None]).ravel()
        cols = (base[:, None, None] + b[None]).ravel()
        return gather(rows, cols).reshape(nl, p, p)

    def level_block_sums(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, Σ_l A⁻¹_ll over its levels (p_k × p_k): all the gradient and EM need of A⁻¹
        while every T_k is nonsingular. Kept for the last θ (an EM step and a gradient share them)."""
        self._update(theta)
        if self._sums is None or not np.array_equal(self._sums[0], self._theta):
            self._sums = (self._theta, self._level_block_sums(theta))
        return self._sums[1]

    def _level_block_sums(self, theta: np.ndarray) -> list[np.ndarray]:
        gather = self.inverse_gather(theta)
        return [self._level_blocks(gather, k).sum(axis=0) for k in range(len(self.layout.terms))]

    def cond_var(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the diagonal blocks of Λ A⁻¹ Λ' (shape ℓ_k × p_k × p_k)."""
        gather = self.inverse_gather(theta)
        return [np.einsum("ij,ljk,mk->lim", T, self._level_blocks(gather, k), T)
                for k, T in enumerate(self.layout.T(theta))]

"""Denominator degrees of freedom for tests of the fixed effects: Satterthwaite and Kenward–Roger.

Both follow the R packages a study cites, to their last documented detail.

**Satterthwaite** (lmerTest 3.1, Kuznetsova et al. 2017). The variance
parameters are φ = (θ, σ); the deviance d(θ, σ) is profiled over β only. For a
contrast L the variance of Lβ̂ is v(φ) = L C(φ) L' with C = σ²(RX'RX)⁻¹, and

    ν = 2 v² / (∇v' A ∇v),   A = 2 H⁻¹,   H = ∇²d,

lmerTest's ``vcov_varpar`` and ``Jac_list``, which it takes by numerical
differences of the deviance (numDeriv). Here both come from the fit:

* the Jacobian is analytic: ∂C/∂σ = 2σ M⁻¹ and ∂C/∂θ_j = σ² M⁻¹(D_j + D_j')M⁻¹
  with M = RX'RX and ∂M/∂θ_j = −(D_j + D_j') from the gradient's pieces
  (:meth:`ProfiledBackend._gradient_pieces`);
* the Hessian of d follows from the Hessian of the profiled objective f(θ)
  (σ² = r²/ν profiled out), which is the forward difference of the analytic
  gradient (dim θ + 1 gradient evaluations): with g = ∂r²/∂θ,

      H_θθ = ∇²f + g g' / (ν σ⁴),   H_θσ = −2 g / σ³,   H_σσ = 4 ν / σ²

  (eliminating σ from H gives back ∇²f).

A multi-row contrast (F test) follows lmerTest's ``contestMD``: L rotated to
the eigenvectors of L C L', one ν_m per row, pooled by ``get_Fstat_ddf``.

**Kenward–Roger** (pbkrtest 0.5, Halekoh and Højsgaard 2014). The variance
parameters are the covariance elements σ_i of each Ψ_k and the residual
variance, V = Σ σ_i G_i with G_i = Z E_i Z' (E_i = I_ℓ ⊗ (e_a e_b' + e_b e_a'))
or I. pbkrtest builds n × n matrices; every product it needs reduces to q-space
through V⁻ᵐ = σ⁻²ᵐ (I − ZΛ(A⁻¹ + … + A⁻ᵐ)Λ'Z'):

    [Z X]'V⁻ᵐ[Z X] = σ⁻²ᵐ (D'D − F'(A⁻¹ + … + A⁻ᵐ)F),   F = Λ'Z'[Z X],
    tr V⁻² = σ⁻⁴ (n − q + ‖A⁻¹‖²_F),

so the cost is that of a dense A⁻¹ (q × q): moderate q only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from .distributions import f_sf, t_two_sided

#: Largest q (random effects) for the dense Kenward–Roger computation.
KR_MAX_Q = 8000


def _fixed_cov(result) -> tuple[np.ndarray, np.ndarray]:
    """M⁻¹ = (RX'RX)⁻¹ and C = σ² M⁻¹ of a fit."""
    RX = result._sol.RX
    Rinv = solve_triangular(RX, np.eye(RX.shape[0]))
    Minv = Rinv @ Rinv.T
    return Minv, result.scale * Minv


def profiled_hessian(backend, theta: np.ndarray, rel_step: float = 1e-6) -> np.ndarray:
    """∇² of the profiled objective at θ: forward differences of the analytic gradient, dim θ + 1
    gradient evaluations (steps upward: inside the domain at a bound too).

    With the step 1e-6 |θ_j| the truncation error (∝ step) and the rounding error (∝ 1/step) are
    both near 1e-6 relative: Satterthwaite's df agree with central differences of step 1e-4 (twice
    the gradients) to 2e-6 on the reference models.
    """
    theta = np.asarray(theta, dtype=float)
    g0 = backend.gradient(theta)
    H = np.empty((theta.size, theta.size))
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = rel_step * max(abs(theta[j]), 1e-2)
        H[:, j] = (backend.gradient(theta + e) - g0) / e[j]
    return (H + H.T) / 2


def unprofiled_hessian(Hf: np.ndarray, g: np.ndarray, pwrss: float, nu: float, sigma: float) -> np.ndarray:
    """∇² in (θ, σ) of d = log|A| [+ log|RX|²] + r²/σ² + ν log 2πσ² (β profiled), from the Hessian
    ``Hf`` of the objective with σ profiled out and g = ∂r²/∂θ; the θθ block is exact at σ² = r²/ν:

        H_θθ = Hf + g g'/(ν σ⁴),   H_θσ = −2 g/σ³,   H_σσ = 6 r²/σ⁴ − 2ν/σ²  (= 4ν/σ² at σ̂).
    """
    nt = g.size
    H = np.empty((nt + 1, nt + 1))
    H[:nt, :nt] = Hf + np.outer(g, g) / (nu * sigma ** 4)
    H[:nt, nt] = H[nt, :nt] = -2 * g / sigma ** 3
    H[nt, nt] = 6 * pwrss / sigma ** 4 - 2 * nu / sigma ** 2
    return H


@dataclass(frozen=True)
class ContrastTest:
    """One test of H₀: Lβ = 0. ``estimate`` and ``se`` are given for a single row. ``F_unscaled``:
    Kenward–Roger's F before its scaling (pbkrtest's ``FtestU``, from which lmerTest computes Sum Sq
    and Mean Sq); None where F is not scaled."""

    estimate: float | None
    se: float | None
    num_df: int
    den_df: float
    F: float
    p: float
    F_unscaled: float | None = None

    @property
    def t(self) -> float:
        return self.estimate / self.se


def _check_L(L, p: int) -> np.ndarray:
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if L.ndim != 2 or L.shape[1] != p:
        raise ValueError(f"a contrast needs {p} columns (one per fixed effect), not shape {np.shape(L)}")
    if not np.all(np.isfinite(L)):
        raise ValueError("the contrast matrix has non-finite entries")
    if np.linalg.matrix_rank(L) < L.shape[0]:
        raise ValueError(f"the contrast matrix ({L.shape[0]} rows) is not of full row rank")
    return L


def pooled_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: one denominator df from the per-row ν_m of an F test."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = np.sum(nu / (nu - 2))
    return float(2 * E / (E - nu.size))


class Satterthwaite:
    """Satterthwaite's df for any contrast of one fit (see the module docstring)."""

    def __init__(self, result):
        model, sol = result.model, result._sol
        backend = model.backend
        theta = sol.theta
        self.beta = sol.beta
        self.Minv, self.C = _fixed_cov(result)
        sigma = result.sigma
        nu = model.crossprod.n - (backend.p if result.reml else 0)
        beta_e = sol.beta - model.crossprod.beta_shift
        _, g, D = backend._gradient_pieces(theta, beta_e, sol.u, traces=False)  # at θ̂: the fit's last factor
        Hf = profiled_hessian(backend, theta)
        self.hessian = H = unprofiled_hessian(Hf, g, sol.pwrss, nu, sigma)
        self.A = 2 * np.linalg.pinv(H)
        S = D + D.transpose(0, 2, 1)
        self.jacobian = np.concatenate([result.scale * self.Minv @ S @ self.Minv,
                                        (2 * sigma * self.Minv)[None]])

    def _nu(self, l: np.ndarray, var: float) -> float:
        grad = np.einsum("i,jik,k->j", l, self.jacobian, l)
        return float(2 * var ** 2 / (grad @ self.A @ grad))

    def test(self, L) -> ContrastTest:
        """The t (one row) or F test of Lβ = 0 (lmerTest's ``contest1D`` / ``contestMD``)."""
        L = _check_L(L, self.beta.size)
        if L.shape[0] == 1:
            l = L[0]
            var = float(l @ self.C @ l)
            est = float(l @ self.beta)
            df = self._nu(l, var)
            t = est / np.sqrt(var)
            return ContrastTest(est, float(np.sqrt(var)), 1, df, t * t, float(t_two_sided(t, df)))
        d, P = np.linalg.eigh(L @ self.C @ L.T)
        PtL = P.T @ L
        t2 = (PtL @ self.beta) ** 2 / d
        F = float(t2.sum() / L.shape[0])
        nu = np.array([self._nu(PtL[m], d[m]) for m in range(L.shape[0])])
        df = pooled_ddf(nu)
        return ContrastTest(None, None, L.shape[0], df, F, float(f_sf(F, L.shape[0], df)))


class KenwardRoger:
    """Kenward–Roger's adjusted covariance and df (see the module docstring)."""

    def __init__(self, result):
        if not result.reml:
            raise ValueError("Kenward–Roger is defined for REML fits (pbkrtest refuses ML fits): refit with "
                             "reml=True")
        model, sol = result.model, result._sol
        layout, cp = model.layout, model.crossprod
        q, p, n = layout.q, cp.XtX.shape[0], cp.n
        if q > KR_MAX_Q:
            raise ValueError(f"Kenward–Roger needs dense {q} × {q} matrices here (q = {q} random effects > "
                             f"{KR_MAX_Q}); use ddf='satterthwaite'")
        s2 = result.scale
        self.beta = sol.beta
        _, Phi = _fixed_cov(result)
        self.Phi = Phi
        Lam = layout.lambda_matrix(sol.theta)
        ZtZ = cp.ZtZ.toarray()
        ZtX = np.asarray(cp.ZtX)
        DD = np.block([[ZtZ, ZtX], [ZtX.T, cp.XtX]])
        F = Lam.T @ np.hstack([ZtZ, ZtX])  # Λ'Z'[Z X]
        A = Lam.T @ sp.csc_matrix(ZtZ) @ Lam + sp.identity(q)
        Ainv = cho_solve(cho_factor(A.toarray()), np.eye(q))
        G1 = Ainv
        G2 = Ainv + Ainv @ Ainv
        G3 = Ainv + G2 @ Ainv  # A⁻¹ + A⁻² + A⁻³
        S1 = (DD - F.T @ G1 @ F) / s2
        S2 = (DD - F.T @ G2 @ F) / s2 ** 2
        S3XX = (DD[q:, q:] - F[:, q:].T @ G3 @ F[:, q:]) / s2 ** 3
        s1zz, s1zx, s2zz, s2zx = S1[:q, :q], S1[:q, q:], S2[:q, :q], S2[:q, q:]
        E = self._structure_matrices(layout)
        m = len(E) + 1  # and the residual
        ES = [Ei @ s1zz for Ei in E]
        EX = [Ei @ s1zx for Ei in E]
        P = [-(s1zx.T @ EXi) for EXi in EX] + [-S2[q:, q:]]
        Q = np.empty((m, m, p, p))
        K = np.empty((m, m))
        for i in range(m - 1):
            for j in range(m - 1):
                Q[i, j] = EX[i].T @ s1zz @ EX[j]
                K[i, j] = np.sum(ES[i] * ES[j].T)
            Q[i, m - 1] = EX[i].T @ s2zx
            Q[m - 1, i] = Q[i, m - 1].T
            K[i, m - 1] = K[m - 1, i] = (E[i] @ s2zz).diagonal().sum()
        Q[m - 1, m - 1] = S3XX
        K[m - 1, m - 1] = (n - q + np.sum(Ainv * Ainv)) / s2 ** 2
        IE2 = np.empty((m, m))
        for i in range(m):
            for j in range(m):
                IE2[i, j] = K[i, j] - 2 * np.sum(Phi * Q[i, j]) + np.sum((Phi @ P[i]) * (P[j] @ Phi))
        cond = np.min(np.abs(np.linalg.eigvalsh(IE2)))
        W = 2 * (np.linalg.inv(IE2) if cond > 1e-10 else np.linalg.pinv(IE2))
        U = np.zeros((p, p))
        for i in range(m):
            for j in range(m):
                U += W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j])
        self.P, self.W, self.K, self.Q = P, W, K, Q
        self.PhiA = Phi + 2 * Phi @ U @ Phi

    @staticmethod
    def _structure_matrices(layout) -> list[sp.csr_matrix]:
        """E_i (q × q) of each covariance element of each Ψ_k: G_i = Z E_i Z'."""
        out = []
        for k, term in enumerate(layout.terms):
            base = layout.col_offset[k] + np.arange(term.nlevels) * term.p
            for b in range(term.p):
                for a in range(b, term.p):
                    if a != b and term.diagonal:
                        continue
                    rows, cols = base + a, base + b
                    if a != b:
                        rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])
                    out.append(sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(layout.q, layout.q)))
        return out

    def _adjust(self, L: np.ndarray) -> tuple[float, float, float]:
        """pbkrtest's ``.KR_adjust`` for L: (df2, F scaling, A2)."""
        Phi, P, W = self.Phi, self.P, self.W
        q = L.shape[0]
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        TP = Theta @ Phi
        u = [TP @ Pi @ Phi for Pi in P]
        m = len(P)
        A1 = A2 = 0.0
        for i in range(m):
            for j in range(m):
                A1 += W[i, j] * np.trace(u[i]) * np.trace(u[j])
                A2 += W[i, j] * np.sum(u[i] * u[j].T)
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        V0, V1, V2 = 1 + c1 * B, 1 - c2 * B, 1 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        x = 1 - A2 / q
        ratio = 1.0 if abs(x) < 1e-14 and abs(V1) < 1e-14 else x / V1  # pbkrtest's .divZero
        rho = ratio ** 2 * V0 / V2 / q
        df2 = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
        return float(df2), float(scaling), float(A2)

    def test(self, L) -> ContrastTest:
        """lmerTest's Kenward–Roger ``contest``: t test on the adjusted covariance (one row,
        pbkrtest's ``Lb_ddf``) or the scaled F of ``KRmodcomp``."""
        L = _check_L(L, self.beta.size)
        df2, scaling, _ = self._adjust(L)
        Lb = L @ self.beta
        if L.shape[0] == 1:
            var = float(L[0] @ self.PhiA @ L[0])
            t = float(Lb[0]) / np.sqrt(var)
            return ContrastTest(float(Lb[0]), float(np.sqrt(var)), 1, df2, t * t,
                                float(t_two_sided(t, df2)))
        q = L.shape[0]
        F_unscaled = float(Lb @ np.linalg.solve(L @ self.PhiA @ L.T, Lb)) / q
        F = scaling * F_unscaled
        return ContrastTest(None, None, q, df2, F, float(f_sf(F, q, df2)), F_unscaled)


class Asymptotic:
    """z and χ²/q tests (infinite df), or t and F tests with the residual df ``n − p``."""

    def __init__(self, result, residual: bool):
        self.beta = result._sol.beta
        _, self.C = _fixed_cov(result)
        self.df = float(result.nobs - self.beta.size) if residual else np.inf

    def test(self, L) -> ContrastTest:
        L = _check_L(L, self.beta.size)
        Lb = L @ self.beta
        q = L.shape[0]
        F = float(Lb @ np.linalg.solve(L @ self.C @ L.T, Lb)) / q
        p = float(f_sf(F, q, self.df))
        if q == 1:
            se = float(np.sqrt(L[0] @ self.C @ L[0]))
            return ContrastTest(float(Lb[0]), se, 1, self.df, F, p)
        return ContrastTest(None, None, q, self.df, F, p)


DDF_METHODS = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger",
               "residual": "residual", "asymptotic": "asymptotic"}


def ddf_method(result, ddf: str):
    """The object that tests contrasts of ``result`` with the named df method (cached on the result)."""
    key = str(ddf).lower().replace("_", "-")
    key = {"kr": "kenward-roger", "kenward roger": "kenward-roger"}.get(key, key)
    if key not in DDF_METHODS:
        raise ValueError(f"ddf must be one of {', '.join(repr(k) for k in DDF_METHODS)}, not {ddf!r}")
    cache = result.__dict__.setdefault("_ddf_cache", {})
    if key not in cache:
        if key == "satterthwaite":
            cache[key] = Satterthwaite(result)
        elif key == "kenward-roger":
            cache[key] = KenwardRoger(result)
        else:
            cache[key] = Asymptotic(result, residual=key == "residual")
    return cache[key]

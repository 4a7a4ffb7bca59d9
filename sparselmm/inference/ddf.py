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
from scipy.linalg import solve_triangular

from ..memory import without_hugepage_advice
from .distributions import f_sf, t_two_sided

#: Largest q (random effects) for the dense Kenward–Roger computation.
KR_MAX_Q = 8000


def _structure(layout) -> list[tuple[int, np.ndarray]]:
    """The covariance elements of each Ψ_k as pbkrtest orders them (the lower triangle by columns;
    diagonal terms only their diagonal): (k, E) with G_i = Z (I_ℓ ⊗ E) Z', E = e_a e_b' + e_b e_a'
    (a ≠ b) or e_a e_a'."""
    out = []
    for k, term in enumerate(layout.terms):
        for b in range(term.p):
            for a in range(b, term.p):
                if a != b and term.diagonal:
                    continue
                E = np.zeros((term.p, term.p))
                E[a, b] = E[b, a] = 1.0
                out.append((k, E))
    return out


#: Z'V⁻¹Z through Λ⁻¹ when every diagonal of every T_k is at least this: I − A⁻¹ is then scaled by
#: 1/θ² (rounding of 1e-16 becomes 1e-10 at most); below, through F = Λ'Z'Z (a q × nnz product).
LAMBDA_INVERSE_MIN = 1e-3


def _inverse_covariances(layout, theta, Ainv, F, ZtZ, general: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """σ² Z'V⁻¹Z (q × q) and, per term, Σ_l of the level blocks of σ⁴ Z'V⁻²Z (p_k × p_k), through
    Λ⁻¹ where every T_k is well conditioned (:data:`LAMBDA_INVERSE_MIN`; and not ``general``), else
    through F = Λ'Z'Z; Ainv is overwritten."""
    Ts = layout.T(theta)
    terms = list(enumerate(layout.terms))
    spans = [(layout.col_offset[k], layout.col_offset[k + 1], np.arange(t.nlevels), t) for k, t in terms]

    def level_sum(M, lev, t):  # Σ_l of the level blocks M_ll of one term (M: its rows and columns)
        return M.reshape(t.nlevels, t.p, t.nlevels, t.p)[lev, :, lev, :].sum(axis=0)

    def row_squares(M, a, b, t):  # Σ_l (M M')_ll over one term's rows of M
        R = M[a:b].reshape(t.nlevels, t.p, -1)
        return np.einsum("lam,lbm->ab", R, R)

    if not general and all(np.all(np.abs(np.diag(T)) >= LAMBDA_INVERSE_MIN) for T in Ts):
        Tinv = [np.linalg.inv(T) for T in Ts]
        diag2 = [Ti.T @ (level_sum(Ainv[a:b, a:b], lev, t) - row_squares(Ainv, a, b, t)) @ Ti
                 for Ti, (a, b, lev, t) in zip(Tinv, spans)]  # Λ⁻ᵀ(A⁻¹ − A⁻²)Λ⁻¹
        S = Ainv
        np.negative(S, out=S)
        S[np.diag_indices_from(S)] += 1.0  # I − A⁻¹
        for Ti, (a, b, _, t) in zip(Tinv, spans):  # Λ⁻ᵀ (I − A⁻¹) Λ⁻¹, a term's rows and columns at a time
            if t.p == 1:
                S[a:b] *= Ti[0, 0]
                S[:, a:b] *= Ti[0, 0]
            else:
                rows = S[a:b].reshape(t.nlevels, t.p, -1)
                S[a:b] = np.einsum("ba,lbq->laq", Ti, rows).reshape(b - a, -1)
                cols = S[:, a:b].reshape(-1, t.nlevels, t.p)
                S[:, a:b] = (cols @ Ti).reshape(-1, b - a)
        return S, diag2
    G = np.asarray(F.T @ Ainv)  # F'A⁻¹ (q × q)
    S = ZtZ.toarray() - np.asarray(F.T @ G.T)  # Z'Z − F'A⁻¹F
    diag2 = [level_sum(S[a:b, a:b], lev, t) - row_squares(G, a, b, t) for a, b, lev, t in spans]
    return S, diag2


def _pair_traces(layout, S: np.ndarray) -> list[list[np.ndarray]]:
    """For each pair of terms (k, k'), H[b, c, a, d] = Σ_{l ∈ k, l' ∈ k'} S_{l l'}[b, c] S_{l l'}[a, d],
    so that tr(G_i V⁻¹ G_j V⁻¹) = Σ E_i[a, b] E_j[c, d] H[b, c, a, d] (S = Z'V⁻¹Z)."""
    K = len(layout.terms)
    out = [[None] * K for _ in range(K)]
    for k in range(K):
        a, b = layout.col_offset[k], layout.col_offset[k + 1]
        for j in range(k, K):
            c, d = layout.col_offset[j], layout.col_offset[j + 1]
            block = S[a:b, c:d]
            if layout.p[k] == layout.p[j] == 1:  # Σ of squares, without copying the block
                H = np.einsum("ij,ij->", block, block).reshape(1, 1, 1, 1)
            else:
                B = block.reshape(layout.nlevels[k], layout.p[k], layout.nlevels[j], layout.p[j])
                H = np.tensordot(B, B, axes=([0, 2], [0, 2]))  # [b, c, a, d]
            out[k][j] = H
            out[j][k] = H.transpose(1, 0, 3, 2)
    return out


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
    """Kenward–Roger's adjusted covariance and df (see the module docstring).

    Everything comes from the dense A⁻¹ (``backend.dense_inverse``) and the crossproducts. With
    F = Λ'Z'Z, C_X = Λ'Z'X and W_X = A⁻¹C_X (σ² factored out):

        Z'V⁻¹X = Z'X − F'W_X,   Z'V⁻²X = Z'X − F'(W_X + A⁻¹W_X),
        X'V⁻ᵐX = X'X − C_X'(A⁻¹ + … + A⁻ᵐ)C_X,

    and, where every T_k is nonsingular (Λ'Z'ZΛ = A − I),

        Z'V⁻¹Z = Λ⁻ᵀ(I − A⁻¹)Λ⁻¹,   Z'V⁻²Z = Λ⁻ᵀ(A⁻¹ − A⁻²)Λ⁻¹

    (else Z'Z − F'A⁻¹F and Z'Z − F'(A⁻¹ + A⁻²)F). The traces tr(V⁻¹G_iV⁻¹G_j) of the information
    are sums over the blocks of Z'V⁻¹Z between two terms' levels, one tensor contraction per pair
    of terms (:func:`_pair_traces`); no n × n and no q × q × q product is formed.

    A maximum-likelihood fit (emmeans' use) takes the adjustment of its REML refit, as pbkrtest's
    ``vcovAdj`` does.
    """

    def __init__(self, result):
        if not result.reml:
            raise ValueError("Kenward–Roger is defined for REML fits (lmerTest refuses ML fits): refit with "
                             "reml=True")
        model, sol = result.model, result._sol
        layout, cp, backend = model.layout, model.crossprod, model.backend
        q, p, n = layout.q, cp.XtX.shape[0], cp.n
        if q > KR_MAX_Q:
            raise ValueError(f"Kenward–Roger needs dense {q} × {q} matrices here (q = {q} random effects > "
                             f"{KR_MAX_Q}); use ddf='satterthwaite'")
        s2 = result.scale
        theta = sol.theta
        self.beta = sol.beta
        _, Phi = _fixed_cov(result)
        self.Phi = Phi
        Ainv = backend.dense_inverse(theta)
        Lam = layout.lambda_matrix(theta)
        ZtX, XtX = np.asarray(cp.ZtX), cp.XtX
        CX = Lam.T @ ZtX
        WX = Ainv @ CX
        AWX = Ainv @ WX
        F = (Lam.T @ cp.ZtZ).tocsr()  # Λ'Z'Z
        s1zx = (ZtX - F.T @ WX) / s2
        s2zx = (ZtX - F.T @ (WX + AWX)) / s2 ** 2
        S2XX = (XtX - CX.T @ WX - WX.T @ WX) / s2 ** 2
        S3XX = (XtX - CX.T @ WX - WX.T @ WX - WX.T @ AWX) / s2 ** 3
        frob = float(np.vdot(Ainv, Ainv))
        s1zz, s2diag = _inverse_covariances(layout, theta, Ainv, F, cp.ZtZ)
        s1zz /= s2
        s2diag = [d / s2 ** 2 for d in s2diag]
        E = _structure(layout)  # per θ-free covariance element: (term, p_k × p_k pattern)
        m = len(E) + 1  # and the residual
        X3 = [s1zx[layout.col_offset[k]:layout.col_offset[k + 1]].reshape(layout.nlevels[k], layout.p[k], p)
              for k in range(len(layout.terms))]
        EX = [np.einsum("ab,lbr->lar", Ek, X3[k]) for k, Ek in E]  # E_i Z'V⁻¹X on term k's rows
        P = [-np.einsum("lar,las->rs", X3[k], EXi) for (k, _), EXi in zip(E, EX)] + [-S2XX]
        Q = np.empty((m, m, p, p))
        K = np.empty((m, m))
        traces = _pair_traces(layout, s1zz)
        cols = [slice(layout.col_offset[k], layout.col_offset[k + 1]) for k in range(len(layout.terms))]
        SEX = [s1zz[:, cols[k]] @ EXj.reshape(-1, p) for (k, _), EXj in zip(E, EX)]  # Z'V⁻¹Z E_j Z'V⁻¹X
        for i, (ki, Ei) in enumerate(E):
            EXi = EX[i].reshape(-1, p)
            for j, (kj, Ej) in enumerate(E):
                Q[i, j] = EXi.T @ SEX[j][cols[ki]]
                K[i, j] = np.einsum("ab,cd,bcad->", Ei, Ej, traces[ki][kj])
            Q[i, m - 1] = EXi.T @ s2zx[cols[ki]]
            Q[m - 1, i] = Q[i, m - 1].T
            K[i, m - 1] = K[m - 1, i] = np.sum(Ei * s2diag[ki].T)
        Q[m - 1, m - 1] = S3XX
        K[m - 1, m - 1] = (n - q + frob) / s2 ** 2
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

    def _adjust(self, L: np.ndarray, V0: np.ndarray | None = None) -> tuple[float, float, float]:
        """pbkrtest's ``.KR_adjust`` for L: (df2, F scaling, A2); ``V0`` in place of the fit's unadjusted
        covariance (``Lb_ddf(L, V0, Vadj)``)."""
        Phi, P, W = self.Phi if V0 is None else V0, self.P, self.W
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
        with without_hugepage_advice():  # Kenward–Roger's dense q × q arrays: fresh pages without compaction
            if key == "satterthwaite":
                cache[key] = Satterthwaite(result)
            elif key == "kenward-roger":
                cache[key] = KenwardRoger(result)
            else:
                cache[key] = Asymptotic(result, residual=key == "residual")
    return cache[key]

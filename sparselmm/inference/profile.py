"""Likelihood profiles and profile intervals (lme4's ``profile`` and ``confint(method = "profile")``).

As lme4, profiles are of the ML deviance (a REML fit is refitted by ML,
lme4's ``devfun2``) in lme4's parameters: the standard deviation and the
correlations of each term (``sd_(Intercept)|Subject``,
``cor_Days.(Intercept)|Subject``), ``sigma``, and the fixed effects. For a
parameter fixed at x the deviance is minimized over all the others, and

    ζ(x) = sign(x − x̂) √(D(x) − D̂).

Each constrained fit is Newton's method (:func:`sparselmm.driver.newton`),
warm-started from the nearest point already fitted, on the analytic gradient
and the average-information Hessian of the fit's own backend: no new
crossproducts and no new symbolic analysis.

* A variance parameter φ_k fixed: the deviance D(θ, σ) = log|A| + r²/σ² +
  n log 2πσ² [− Σ log w, prior weights] (β profiled) is minimized over the other φ; (θ, σ) is a cheap
  function of φ (the Cholesky factor of each Ψ_k/σ²) whose Jacobian is taken
  by differences; ∂D/∂θ_j = 2 tr(A⁻¹Λ'Z'ZΛ_j) + (∂r²/∂θ_j)/σ².
* A fixed effect β_j = b: σ is profiled out, and the best other β at each θ
  is β̂ − M⁻¹e_j (β̂_j − b)/(M⁻¹)_jj (M = RX'RX), so the objective is the
  backend's objective at that β and its gradient the backend's gradient at
  that β (the envelope theorem).

Interval ends are roots of ζ(x) = ±z found by Brent's method on a
monotone scale (log for standard deviations, atanh for correlations), not
interpolated, so they are exact to the optimizer's tolerance.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize

from ..driver import newton
from . import interval_columns
from .ddf import profiled_hessian, unprofiled_hessian
from .distributions import chi2_ppf, norm_ppf
from .lrt import refit_ml

#: lme4's default ``alphamax``: traces extend to ζ = √χ²_{1−α}(number of parameters).
ALPHAMAX = 0.01


def varpar_names(layout) -> list[str]:
    """lme4's names (``oldNames = FALSE``) of the sd/cor parameters, in θ's order, then ``sigma``."""
    names = []
    for term in layout.terms:
        idx = term.theta_index()
        for j in range(term.p):
            for i in range(j, term.p):
                if idx[i, j] < 0:
                    continue
                if i == j:
                    names.append(f"sd_{term.columns[i]}|{term.group}")
                else:
                    names.append(f"cor_{term.columns[i]}.{term.columns[j]}|{term.group}")
    return names + ["sigma"]


def varpar(layout, theta, sigma) -> np.ndarray:
    """lme4's sd/cor parameters (σ T_k T_k' of each term, θ's order), then σ."""
    out = []
    for term, T in zip(layout.terms, layout.T(theta)):
        S = sigma ** 2 * T @ T.T
        sd = np.sqrt(np.diag(S))
        idx = term.theta_index()
        for j in range(term.p):
            for i in range(j, term.p):
                if idx[i, j] >= 0:
                    out.append(sd[i] if i == j else S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan)
    return np.array(out + [sigma])


class Profiler:
    """Constrained ML fits of one model (see the module docstring)."""

    def __init__(self, result):
        self.fit = fit = refit_ml(result)
        model = fit.model
        self.backend, self.layout = model.backend, model.layout
        self.n = model.crossprod.n
        self.shift = model.crossprod.beta_shift
        self.log_weights = model.crossprod.log_weights
        self.dev_hat = fit.objective
        self.theta_hat = fit.theta.to_numpy()
        self.sigma_hat = fit.sigma
        self.beta_hat = fit.fe_params.to_numpy()
        self.names = varpar_names(self.layout) + list(fit.fe_params.index)
        self.nvar = self.layout.ntheta + 1
        self.phi_hat = self.to_varpar(self.theta_hat, self.sigma_hat)

    # --- the parameterization ------------------------------------------------
    def to_varpar(self, theta, sigma) -> np.ndarray:
        return varpar(self.layout, theta, sigma)

    def to_theta(self, phi) -> tuple[np.ndarray, float]:
        sigma = phi[-1]
        theta = np.empty(self.layout.ntheta)
        pos = 0
        for k, term in enumerate(self.layout.terms):
            idx = term.theta_index()
            sd, R = np.zeros(term.p), np.eye(term.p)
            for j in range(term.p):
                for i in range(j, term.p):
                    if idx[i, j] >= 0:
                        if i == j:
                            sd[i] = phi[pos]
                        else:
                            R[i, j] = R[j, i] = phi[pos]
                        pos += 1
            if term.p == 1 or term.diagonal:
                T = np.diag(np.abs(sd)) / sigma
            else:
                w, Q = np.linalg.eigh(R)
                T = np.linalg.qr((Q * np.sqrt(np.clip(w, 0, None))).T, mode="r").T
                T = (T * np.where(np.diag(T) < 0, -1.0, 1.0)) * np.abs(sd)[:, None] / sigma
            mask = idx >= 0
            theta[self.layout.theta_offset[k] + idx[mask]] = T[mask]
        return theta, sigma

    def _jacobian(self, phi) -> np.ndarray:
        """∂(θ, σ)/∂φ by central differences of :meth:`to_theta` (no model evaluations)."""
        m = phi.size
        J = np.empty((m, m))
        for i in range(m):
            h = 1e-7 * max(abs(phi[i]), 1e-3)
            e = np.zeros(m)
            e[i] = h
            a, sa = self.to_theta(phi + e)
            b, sb = self.to_theta(phi - e)
            J[:, i] = np.append(a - b, sa - sb) / (2 * h)
        return J

    def _domain(self, phi) -> np.ndarray:
        out = np.array(phi, dtype=float)
        for i, name in enumerate(self.names[:self.nvar]):
            out[i] = np.clip(out[i], -1 + 1e-12, 1 - 1e-12) if name.startswith("cor_") else abs(out[i])
        return out

    # --- the unprofiled deviance and its derivatives ---------------------------
    def _pieces(self, theta):
        b = self.backend
        logdet, _, _, beta, pwrss = b._update(theta)
        return logdet, pwrss, beta

    def deviance(self, theta, sigma) -> float:
        logdet, pwrss, _ = self._pieces(theta)
        return logdet + pwrss / sigma ** 2 + self.n * np.log(2 * np.pi * sigma ** 2) - self.log_weights

    def deviance_gradient(self, theta, sigma) -> np.ndarray:
        b = self.backend
        _, pwrss, beta = self._pieces(theta)
        tr, r2, _ = b._gradient_pieces(theta, beta - self.shift, b._spherical(theta))
        return np.append(2 * tr + r2 / sigma ** 2, -2 * pwrss / sigma ** 3 + 2 * self.n / sigma)

    def deviance_hessian(self, theta, sigma, exact: bool = False) -> np.ndarray:
        """∇² of D in (θ, σ) from the Hessian of the profiled objective (exact: differences of the
        gradient; else the average information), exact at σ̂(θ)."""
        b = self.backend
        _, pwrss, beta = self._pieces(theta)
        g = b._gradient_pieces(theta, beta - self.shift, b._spherical(theta), traces=False)[1]
        Hf = profiled_hessian(b, theta) if exact else b.approximate_hessian(theta)
        return unprofiled_hessian(Hf, g, pwrss, self.n, sigma)

    @cached_property
    def se(self) -> np.ndarray:
        """Approximate standard errors of every parameter from the exact Hessian at the optimum."""
        J = self._jacobian(self.phi_hat)
        H = J.T @ self.deviance_hessian(self.theta_hat, self.sigma_hat, exact=True) @ J
        se_var = np.sqrt(np.abs(np.diag(2 * np.linalg.pinv(H))))
        return np.append(se_var, np.sqrt(np.diag(self.fit.cov_fe.to_numpy())))

    # --- constrained fits ------------------------------------------------------
    def _fit_varpar(self, k: int, x: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        free = np.arange(self.nvar) != k

        def full(z):
            phi = start.copy()
            phi[free], phi[k] = z, x
            return phi

        def f(z):
            theta, sigma = self.to_theta(full(z))
            return self.deviance(theta, sigma)

        def grad(z):
            phi = full(z)
            theta, sigma = self.to_theta(phi)
            return (self._jacobian(phi).T @ self.deviance_gradient(theta, sigma))[free]

        def hess(z, g):
            phi = full(z)
            J = self._jacobian(phi)
            return (J.T @ self.deviance_hessian(*self.to_theta(phi)) @ J)[np.ix_(free, free)]

        def domain(z):
            return self._domain(full(z))[free]

        res = newton(f, grad, hess, start[free], domain, maxiter=100)
        return float(res.fun), full(res.x)

    def _fit_fixed(self, j: int, b: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        back = self.backend

        def beta_at(theta):
            _, _, RX, beta, _ = back._update(theta)
            Rinv = np.linalg.inv(RX)
            m = Rinv @ Rinv[j]  # M⁻¹ e_j
            return beta - m * (beta[j] - b) / m[j]

        res = newton(lambda t: back.objective_at(t, beta_at(t)), lambda t: back.gradient(t, beta_at(t)),
                     lambda t, g: back.approximate_hessian(t), start, self.layout.canonical, maxiter=100)
        return float(res.fun), res.x

    def zeta(self, name: str, x: float, start=None) -> tuple[float, np.ndarray]:
        """ζ at ``name`` = x, and the other parameters' optimum there (φ for a variance parameter, θ for
        a fixed effect)."""
        k = self.names.index(name)
        if k < self.nvar:
            dev, opt = self._fit_varpar(k, x, self.phi_hat if start is None else start)
            xhat = self.phi_hat[k]
        else:
            dev, opt = self._fit_fixed(k - self.nvar, x, self.theta_hat if start is None else start)
            xhat = self.beta_hat[k - self.nvar]
        return float(np.sign(x - xhat) * np.sqrt(max(dev - self.dev_hat, 0.0))), opt

    # --- scales on which ζ is nearly linear --------------------------------------
    def _scale(self, name):
        if name.startswith("sd_") or name == "sigma":
            return np.log, np.exp, (0.0, np.inf)
        if name.startswith("cor_"):
            return np.arctanh, np.tanh, (-1.0, 1.0)
        return (lambda v: v), (lambda v: v), (-np.inf, np.inf)

    def interval_end(self, name: str, target: float) -> float:
        """The root of ζ(x) = target on the side of its sign (the bound where ζ never gets there)."""
        k = self.names.index(name)
        fwd, back, (lo, hi) = self._scale(name)
        xhat = self.phi_hat[k] if k < self.nvar else self.beta_hat[k - self.nvar]
        se = self.se[k]
        bound = lo if target < 0 else hi
        if fwd is np.log:
            # a standard deviation: the first trial at x̂ ± SE·|target| on x's own scale (the delta
            # method's log step SE·|target|/x̂ is unbounded as x̂ → 0, at or near a variance estimated
            # at zero, where the SE is 0 too: then σ̂ sets the scale); below x_min, ζ is taken as flat,
            # the lower end as 0 (lme4 reports 0)
            scale = se if se > 1e-6 * self.sigma_hat else self.sigma_hat
            x_min = 1e-10 * max(xhat, scale)
            if target < 0 and xhat <= x_min:
                return 0.0
            u0 = fwd(max(xhat, x_min))
            x1 = xhat + np.sign(target) * scale * abs(target)
            step = (fwd(x1) if x1 > x_min else u0 + np.log(1e-3)) - u0
        else:
            u0 = fwd(xhat) if xhat > lo else fwd(lo + 1e-8)
            step = se * abs(target)
            if fwd is np.arctanh:
                step /= max(1 - xhat ** 2, 1e-6)
        step = np.sign(target) * max(abs(step), 1e-3)
        warm, seen = {}, {}

        def g(u):
            # each point once: ζ from another warm start may differ in the last digits, and
            # brentq must see the bracket's ends with the signs that made the bracket
            if u not in seen:
                near = min(warm, key=lambda v: abs(v - u)) if warm else None
                z, warm[u] = self.zeta(name, back(u), warm[near] if near is not None else None)
                seen[u] = z - target
            return seen[u]

        a, ga = u0, -target
        b = u0 + step
        gb = g(b)
        for _ in range(30):
            if np.sign(gb) != np.sign(ga):
                break
            if gb == ga or not np.isfinite(gb):
                b_new = b + step
            else:
                b_new = b - gb * (b - a) / (gb - ga)  # secant, at least one step further
                b_new = b + max(abs(b_new - b), abs(step)) * np.sign(step) if np.sign(b_new - b) != np.sign(
                    step) else b_new
            a, ga = b, gb
            if fwd is np.log and back(b_new) < x_min:
                if g(fwd(x_min)) * np.sign(target) < 0:  # ζ never gets to target above x_min: the end is 0
                    return 0.0
                b_new = fwd(x_min)
            elif np.isfinite(bound) and not (lo < back(b_new) < hi):
                x_edge = bound - np.sign(target) * 1e-10
                if g(fwd(x_edge) if x_edge > lo or not np.isfinite(lo) else fwd(lo + 1e-10)) * np.sign(target) < 0:
                    return float(bound)
                b_new = fwd(x_edge)
            b, gb = b_new, g(b_new)
        else:
            raise RuntimeError(f"profile of {name}: ζ never reached {target:.3f}")
        u = optimize.brentq(g, min(a, b), max(a, b), xtol=1e-10, rtol=1e-10)
        return float(back(u))

    def confint(self, level: float = 0.95, parm=None) -> pd.DataFrame:
        z = norm_ppf(0.5 + level / 2)
        names = self.names if parm is None else list(parm)
        rows = [(self.interval_end(nm, -z), self.interval_end(nm, z)) for nm in names]
        return pd.DataFrame(rows, index=names, columns=interval_columns(level))

    def traces(self, parm=None, npoints: int = 8) -> pd.DataFrame:
        """ζ over a grid of each parameter out to lme4's ζ_max on both sides (lme4's ``profile``)."""
        zmax = np.sqrt(chi2_ppf(1 - ALPHAMAX, len(self.names)))
        rows = []
        for name in (self.names if parm is None else parm):
            k = self.names.index(name)
            fwd, back, (lo, hi) = self._scale(name)
            xhat = self.phi_hat[k] if k < self.nvar else self.beta_hat[k - self.nvar]
            rows.append((name, xhat, 0.0))
            for side in (-1, 1):
                end = self.interval_end(name, side * zmax)
                if (fwd is np.log and end <= 0) or end == lo or end == hi:
                    end = xhat + 0.999 * (end - xhat)
                u0, u1 = fwd(xhat), fwd(end)
                start = None
                for u in u0 + (u1 - u0) * np.arange(1, npoints + 1) / npoints:
                    z, start = self.zeta(name, back(u), start)
                    rows.append((name, back(u), z))
        out = pd.DataFrame(rows, columns=["parameter", "value", "zeta"])
        return out.sort_values(["parameter", "value"], kind="stable").reset_index(drop=True)

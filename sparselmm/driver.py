"""The optimizer driver, shared by both backends: minimizes the objective over θ.

The objective is a function of θ alone; lower bounds (0 on the diagonals of
the relative covariance factors) keep θ in its domain, and θ on a bound is
a legitimate optimum (a singular fit), judged by the projected gradient.
The driver sees a :class:`Problem` (θ → objective, gradient, EM update) and
nothing of the model.

``method="auto"`` (the default):

1. EM warm start (Lindstrom and Bates 1988): closed-form updates of each Ψ_k
   from the conditional modes and variances. Large steps far from the
   optimum; it stops once its convergence slows (the gain of a step exceeds
   EM_RATE times the gain of the one before), a step gains less than
   EM_MIN_GAIN, or a step fails to improve.
2. Projected quasi-Newton (:func:`bfgs`) on the analytic gradient from the
   best EM point: dim θ is small, so the first step is Newton's, with the
   Hessian from forward differences of the gradient, and a dense inverse
   Hessian is kept and updated by BFGS after; bounds by projection, the
   variables at an active bound held. A full step is tried first, then
   backtracking (Armijo).
3. If that fails (no convergence, non-finite values), bounded Powell from
   the best point found, without derivatives.

``method="lbfgs"`` runs scipy's L-BFGS-B from the start instead (no EM).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeResult, minimize

METHODS = ("auto", "bfgs", "lbfgs", "powell", "nelder-mead")

#: Quasi-Newton convergence: the relative reduction of the objective in a step
#: (scipy's L-BFGS-B ``ftol``), or the largest projected-gradient component.
FTOL, GTOL = 1e-12, 1e-6

#: EM stops once a step gains more than this fraction of the previous gain
#: (its linear convergence has slowed; the quasi-Newton phase takes over).
EM_RATE = 0.3
EM_MAX_STEPS = 10
#: ... or once a step gains less than this (deviance units): from there the
#: quasi-Newton phase needs a step or two, EM many (and EM's update, the ML
#: form, converges to a point off the REML optimum anyway).
EM_MIN_GAIN = 1.0


@dataclass(frozen=True)
class Problem:
    """What the driver needs of a model.

    Attributes
    ----------
    objective : callable
        θ → ML deviance or REML criterion.
    lower : ndarray
        Lower bounds of θ (-inf where free).
    gradient : callable, optional
        θ → ∂objective/∂θ.
    em_step : callable, optional
        θ → the EM update of θ.
    """

    objective: Callable[[np.ndarray], float]
    lower: np.ndarray
    gradient: Callable[[np.ndarray], np.ndarray] | None = None
    em_step: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass
class OptSummary:
    """One record of an optimization: settings, counts, outcome and path (θ, objective)."""

    method: str
    theta0: np.ndarray
    lower: np.ndarray
    theta: np.ndarray | None = None
    objective: float = np.nan
    nfev: int = 0
    ngrad: int = 0
    nem: int = 0
    niter: int = 0
    pgnorm: float = np.nan
    converged: bool = False
    message: str = ""
    seconds: float = 0.0
    path: list[tuple[np.ndarray, float]] = field(default_factory=list, repr=False)


def projected_gradient(theta: np.ndarray, g: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The gradient with components that push against an active bound removed."""
    return theta - np.maximum(theta - g, lower)


def optimize(problem: Problem, theta0: np.ndarray, method: str = "auto", maxiter: int = 2000) -> OptSummary:
    """Minimize the problem's objective over θ ≥ lower from ``theta0``.

    Parameters
    ----------
    problem : Problem
    theta0 : ndarray
        Start.
    method : {"auto", "bfgs", "lbfgs", "powell", "nelder-mead"}
        "auto": EM warm start, projected quasi-Newton, Powell fallback
        (module docstring); "bfgs": the quasi-Newton phase alone; "lbfgs":
        scipy's L-BFGS-B on the analytic gradient; "powell", "nelder-mead":
        scipy's bounded derivative-free methods.
    maxiter : int
        Iteration limit of each phase.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    needs_grad = method in ("auto", "bfgs", "lbfgs")
    if needs_grad and problem.gradient is None:
        raise ValueError(f"method {method!r} needs the gradient")
    lower = np.asarray(problem.lower, dtype=float)
    summary = OptSummary(method=method, theta0=np.array(theta0, float), lower=lower)
    best = [np.maximum(summary.theta0, lower), np.inf]

    def f(theta):
        theta = np.maximum(theta, lower)
        value = float(problem.objective(theta))
        summary.path.append((theta.copy(), value))
        summary.nfev += 1
        if np.isfinite(value) and value < best[1]:
            best[:] = [theta.copy(), value]
        return value if np.isfinite(value) else np.inf

    last_grad: list = [None, None]  # (θ, gradient) of the last gradient evaluation

    def grad(theta):
        summary.ngrad += 1
        theta = np.maximum(theta, lower)
        last_grad[:] = [theta.copy(), problem.gradient(theta)]
        return last_grad[1]

    start = time.perf_counter()
    x = best[0].copy()
    if method == "auto" and problem.em_step is not None:
        x = _em(problem, x, f, summary)
    if method in ("auto", "bfgs"):
        res = bfgs(f, grad, x, lower, maxiter)
    else:
        res = _phase(method, f, grad, x, lower, maxiter)
    summary.niter += int(getattr(res, "nit", 0))
    if method == "auto" and not (res.success and np.isfinite(res.fun)):
        res = _phase("powell", f, grad, best[0], lower, maxiter)
        summary.niter += int(getattr(res, "nit", 0))
        summary.message = "L-BFGS-B failed; Powell: "
    theta = best[0]
    summary.theta = theta
    summary.objective = best[1]
    summary.converged = bool(res.success)
    summary.message += str(res.message)
    if problem.gradient is not None:
        g = last_grad[1] if np.array_equal(theta, last_grad[0]) else problem.gradient(theta)
        summary.pgnorm = float(np.abs(projected_gradient(theta, g, lower)).max(initial=0.0))
    summary.seconds = time.perf_counter() - start
    return summary


def _em(problem: Problem, x: np.ndarray, f, summary: OptSummary) -> np.ndarray:
    """EM steps from x while each gains at most EM_RATE of the previous gain."""
    value = f(x)
    gain = np.inf
    for _ in range(EM_MAX_STEPS):
        new = np.maximum(problem.em_step(x), problem.lower)
        new_value = f(new)
        summary.nem += 1
        if not new_value < value:
            break
        x, step_gain = new, value - new_value
        value = new_value
        if np.isfinite(gain) and step_gain > EM_RATE * gain:
            break  # EM has slowed to linear convergence with rate > EM_RATE
        if step_gain < EM_MIN_GAIN:
            break
        gain = step_gain
    return x


def difference_hessian(grad, x, g):
    """The Hessian by forward differences of the analytic gradient (steps inside the lower bounds),
    symmetrized and made positive definite (eigenvalues floored at 1e-8 of the largest)."""
    n = len(x)
    B = np.empty((n, n))
    for i in range(n):
        h = 1e-3 * max(abs(x[i]), 0.1)
        e = np.zeros(n)
        e[i] = h
        B[:, i] = (grad(x + e) - g) / h
    w, Q = np.linalg.eigh((B + B.T) / 2)
    w = np.maximum(np.abs(w), 1e-8 * np.abs(w).max(initial=1.0))
    return (Q * w) @ Q.T


def _bfgs_update(H, s, y):
    """The BFGS update of an inverse Hessian (skipped without positive curvature)."""
    sy = s @ y
    if not sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y):
        return H
    rho = 1.0 / sy
    V = np.eye(len(s)) - rho * np.outer(s, y)
    return V @ H @ V.T + rho * np.outer(s, s)


def bfgs(f, grad, x, lower, maxiter):
    """Projected quasi-Newton for a few bounded variables: Newton's first step, BFGS after.

    The inverse Hessian starts as the inverse of :func:`difference_hessian`
    at x (dim θ more gradients; dim θ is small) and takes a BFGS update
    at each step. Variables at their bound with the gradient pushing outwards
    are held; the others take d = −H g, projected onto the bounds, the full
    step first, then backtracked until the Armijo condition holds. Converges
    when a step reduces f by at most FTOL relative, or the quadratic model
    predicts no more (−g'd/2, before the step is taken), or the projected
    gradient is below GTOL.
    """
    x = np.maximum(np.asarray(x, dtype=float), lower)
    fx, g = f(x), grad(x)
    H = None
    message, success = "iteration limit reached", False
    nit = 0
    for nit in range(1, maxiter + 1):
        if np.abs(projected_gradient(x, g, lower)).max(initial=0.0) <= GTOL:
            message, success = "projected gradient below GTOL", True
            break
        if H is None:
            H = np.linalg.inv(difference_hessian(grad, x, g))
        held = (x <= lower) & (g > 0)
        d = np.where(held, 0.0, -(H @ np.where(held, 0.0, g)))
        if not g @ d < 0:  # not a descent direction: restart from the Newton step
            H = np.linalg.inv(difference_hessian(grad, x, g))
            d = np.where(held, 0.0, -(H @ np.where(held, 0.0, g)))
        if -(g @ d) / 2 <= FTOL * max(abs(fx), 1.0):  # the quadratic model's decrease is already below FTOL
            message, success = "predicted reduction of f below FTOL", True
            break
        alpha, accepted = 1.0, False
        for _ in range(40):
            xn = np.maximum(x + alpha * d, lower)
            fn = f(xn)
            decrease = g @ (xn - x)
            if np.isfinite(fn) and fn <= fx + 1e-4 * decrease:
                accepted = True
                break
            # backtrack: the minimum of the quadratic through f(x), f'(x; d) and f(xn), within [0.1, 0.5]
            alpha *= 0.5 if not np.isfinite(fn) else min(0.5, max(0.1, -decrease / (2 * (fn - fx - decrease))))
        if not accepted:
            message = "line search failed"
            break
        gn = grad(xn)
        H = _bfgs_update(H, xn - x, gn - g)
        reduction = fx - fn
        x, fx, g = xn, fn, gn
        if reduction <= FTOL * max(abs(fx), 1.0):
            message, success = "relative reduction of f below FTOL", True
            break
    return OptimizeResult(x=x, fun=fx, success=success, message=message, nit=nit)


def _phase(method, f, grad, x, lower, maxiter):
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    if method in ("auto", "lbfgs"):
        return minimize(f, x, jac=grad, method="L-BFGS-B", bounds=bounds,
                        options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-6})
    if method == "powell":
        return minimize(f, x, method="Powell", bounds=bounds, options={"maxiter": maxiter, "xtol": 1e-8, "ftol": 1e-14})
    return minimize(f, x, method="Nelder-Mead", bounds=bounds,
                    options={"maxiter": maxiter, "xatol": 1e-7, "fatol": 1e-8, "adaptive": True})

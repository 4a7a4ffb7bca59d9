"""The optimizer driver: minimizes the profiled objective over θ.

The objective is a function of θ alone; lower bounds (0 on the diagonals of
the relative covariance factors) keep θ in its domain, and θ on a bound is
a legitimate optimum (a singular fit). This first driver uses scipy's
bounded derivative-free methods; the analytic-gradient Newton/EM driver
replaces it as the default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

METHODS = ("lbfgs", "powell", "nelder-mead")


@dataclass
class OptSummary:
    """One record of an optimization: settings, counts, outcome and path."""

    method: str
    theta0: np.ndarray
    lower: np.ndarray
    theta: np.ndarray | None = None
    objective: float = np.nan
    nfev: int = 0
    niter: int = 0
    converged: bool = False
    message: str = ""
    seconds: float = 0.0
    path: list[tuple[np.ndarray, float]] = field(default_factory=list, repr=False)


def optimize(fun: Callable[[np.ndarray], float], theta0: np.ndarray, lower: np.ndarray,
             method: str = "powell", maxiter: int = 2000,
             grad: Callable[[np.ndarray], np.ndarray] | None = None) -> OptSummary:
    """Minimize ``fun`` over θ ≥ ``lower`` from ``theta0``.

    Parameters
    ----------
    fun : callable
        The objective, θ → float.
    theta0 : ndarray
        Start.
    lower : ndarray
        Lower bounds (-inf where free).
    method : {"lbfgs", "powell", "nelder-mead"}
        "lbfgs": scipy's L-BFGS-B on the analytic gradient ``grad``; the
        others are scipy's bounded derivative-free methods (Powell reaches
        lme4's optimum on every reference model).
    grad : callable, optional
        The gradient, θ → ndarray (needed by "lbfgs").
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    summary = OptSummary(method=method, theta0=np.array(theta0, float), lower=np.array(lower, float))

    def f(theta):
        theta = np.maximum(theta, lower)
        value = fun(theta)
        summary.path.append((theta.copy(), value))
        return value if np.isfinite(value) else np.inf

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    start = time.perf_counter()
    x = np.maximum(summary.theta0, lower)
    if method == "lbfgs":
        if grad is None:
            raise ValueError("method 'lbfgs' needs the gradient")
        res = minimize(f, x, jac=lambda t: grad(np.maximum(t, lower)), method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-6})
    elif method == "powell":
        res = minimize(f, x, method="Powell", bounds=bounds, options={"maxiter": maxiter, "xtol": 1e-8, "ftol": 1e-14})
    else:
        res = minimize(f, x, method="Nelder-Mead", bounds=bounds,
                       options={"maxiter": maxiter, "xatol": 1e-7, "fatol": 1e-8, "adaptive": True})
    summary.seconds = time.perf_counter() - start
    summary.theta = np.maximum(res.x, lower)
    summary.objective = float(fun(summary.theta))
    summary.nfev = len(summary.path)
    summary.niter = int(getattr(res, "nit", 0))
    summary.converged = bool(res.success)
    summary.message = str(res.message)
    return summary

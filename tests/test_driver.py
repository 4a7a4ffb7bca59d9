"""The driver on problems with known answers: interior and boundary optima, non-finite values, iteration limits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import sparselmm
from sparselmm.driver import Problem, optimize, projected_gradient

from .test_sparse_backend import random_data

CENTER = np.array([0.7, -0.4, 1.3])
H = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])


def quadratic(center):
    return (lambda t: float((t - center) @ H @ (t - center))), (lambda t: 2 * H @ (t - center))


@pytest.mark.parametrize("method", ["auto", "bfgs", "lbfgs", "powell", "nelder-mead"])
def test_interior_minimum(method):
    f, g = quadratic(CENTER)
    opt = optimize(Problem(f, np.array([0.0, -np.inf, 0.0]), g), np.ones(3), method=method)
    assert opt.converged
    np.testing.assert_allclose(opt.theta, CENTER, atol=1e-4)
    assert opt.objective == pytest.approx(0.0, abs=1e-8)
    assert opt.nfev == len(opt.path) and opt.seconds > 0


def test_boundary_minimum_has_zero_projected_gradient():
    center = np.array([-0.5, 0.2, 1.0])  # the first coordinate wants to go below its bound 0
    f, g = quadratic(center)
    lower = np.array([0.0, -np.inf, 0.0])
    opt = optimize(Problem(f, lower, g), np.ones(3))
    assert opt.converged and opt.theta[0] == 0.0
    assert g(opt.theta)[0] > 0  # pushing against the bound
    assert opt.pgnorm < 1e-5
    np.testing.assert_array_equal(projected_gradient(opt.theta, g(opt.theta), lower)[0], 0.0)


def test_non_finite_objective_steps_back():
    """Where the objective is NaN, the driver treats it as +inf and stays in the finite region."""
    f0, g = quadratic(np.array([3.0, 0.0, 3.0]))

    def f(t):
        return np.nan if t[0] > 2.0 else f0(t)

    opt = optimize(Problem(f, np.zeros(3), g), np.ones(3))
    assert np.isfinite(opt.objective) and opt.theta[0] <= 2.0
    assert opt.objective < f(np.ones(3))


def test_em_warm_start_is_used_and_counted():
    model = sparselmm.LinearMixedModel("y ~ x + (1|a) + (1|b)", random_data(0))
    opt = optimize(model.problem(), model.theta0)
    assert opt.nem >= 1 and opt.ngrad >= 1 and opt.converged
    # θ = 0 is a stationary point (the objective is even in each scalar term's θ): L-BFGS-B from
    # lme4's start runs into it here; derivative-free Powell does not, and agrees with "auto"
    plain = optimize(model.problem(), model.theta0, method="powell")
    assert plain.nem == 0 and plain.ngrad == 0
    assert opt.objective == pytest.approx(plain.objective, abs=1e-8)


def test_non_convergence_is_reported():
    model = sparselmm.LinearMixedModel("y ~ x + (1 + x|a) + (1|b)", random_data(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit(maxiter=1)
    assert not result.converged
    assert any(issubclass(w.category, sparselmm.ConvergenceWarning) for w in caught)
    assert "NOT converged" in result.summary()

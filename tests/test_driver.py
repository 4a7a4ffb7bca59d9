"""The driver on problems with known answers: interior and boundary optima, non-finite values, iteration limits."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import sparselmm
from sparselmm.driver import Problem, optimize, projected_gradient

from .conftest import load_data, load_reference
from .test_sparse_backend import FORMULAS, random_data

CENTER = np.array([0.7, -0.4, 1.3])
H = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])


def quadratic(center):
    return (lambda t: float((t - center) @ H @ (t - center))), (lambda t: 2 * H @ (t - center))


@pytest.mark.parametrize("method", ["auto", "newton", "bfgs", "lbfgs", "powell", "nelder-mead"])
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


def test_reflection_leaves_the_stationary_point_at_the_bound():
    """f(t) = (t² − 1)² is even, like the objective in a scalar term's θ, so t = 0 is stationary.
    A step past the bound is reflected (|t|): Newton converges to the minimum at 1 instead of
    stopping on the bound, where the projected step would leave it (g(0) = 0)."""
    def f(t):
        return float((t[0] ** 2 - 1) ** 2)

    def g(t):
        return np.array([4 * t[0] * (t[0] ** 2 - 1)])

    def crude_hessian(t, grad):  # far too flat: the full step overshoots below zero
        return np.eye(1)

    assert g(np.zeros(1))[0] == 0.0
    problem = Problem(f, np.zeros(1), g, hessian=crude_hessian, canonical=np.abs)
    opt = optimize(problem, np.array([2.0]), method="newton")
    assert opt.converged and opt.theta[0] == pytest.approx(1.0, abs=1e-6)
    assert all(t[0] != 0.0 for t, _ in opt.path)
    # the same steps projected onto the bound stop on the stationary point: only the probe off zero
    # (the driver's last resort) moves on from there
    projected = optimize(Problem(f, np.zeros(1), g, hessian=crude_hessian), np.array([2.0]), method="newton")
    assert any(t[0] == 0.0 for t, _ in projected.path)
    assert projected.theta[0] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("formula", FORMULAS)
def test_canonical_theta_has_the_same_objective(formula):
    """Negating the columns of T_k with a negative diagonal leaves ΛΛ' and the objective unchanged;
    negating an ``even`` θ_j alone does too."""
    model = sparselmm.LinearMixedModel(formula, random_data(4))
    layout = model.layout
    rng = np.random.default_rng(2)
    for _ in range(3):
        theta = rng.normal(size=layout.ntheta)
        canon = layout.canonical(theta)
        assert np.all(canon >= layout.lower_bounds)
        np.testing.assert_allclose(np.abs(canon), np.abs(theta))
        assert model.objective(canon) == pytest.approx(model.objective(theta), rel=1e-12)
        for j in np.flatnonzero(layout.even):
            flipped = theta.copy()
            flipped[j] = -flipped[j]
            assert model.objective(flipped) == pytest.approx(model.objective(theta), rel=1e-12)


def test_overparameterized_term_converges():
    """A 3 × 3 covariance from two levels: six θ, a singular fit, a near-singular Hessian whose Newton
    steps run far off in the flat directions. The damped steps converge, to Powell's optimum."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=30), "c": rng.choice(["lo", "mid", "hi"], size=30),
                         "g": rng.choice(["l0", "l1"], size=30, p=[0.7, 0.3])})
    model = sparselmm.LinearMixedModel("y ~ 1 + (0 + c | g)", data, reml=False)
    opt = optimize(model.problem(), model.theta0)
    assert opt.converged and opt.message.startswith(("predicted", "relative", "gradient"))  # no Powell rescue
    assert opt.niter < 100
    plain = optimize(model.problem(), model.theta0, method="powell")
    assert opt.objective <= plain.objective + 1e-6


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x|g)", "y ~ x + (1 + x + z|g)"])
def test_collapsing_vector_term_converges_in_few_factorizations(formula):
    """No group variance at all: the vector term collapses to T = 0, where the average information misses
    the curvature of the non-even θ and Newton alone crawled; BFGS takes over after
    NEWTON_MAX_ITER iterations. The optimum is Powell's or better."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    data = pd.DataFrame({"y": x + rng.normal(size=n), "x": x, "z": rng.normal(size=n),
                         "g": rng.integers(0, 20, n).astype(str)})
    model = sparselmm.LinearMixedModel(formula, data)
    opt = optimize(model.problem(), model.theta0)
    assert opt.converged and model.backend.nfactor < 100  # Newton alone: 200 and 395
    plain = optimize(model.problem(), model.theta0, method="powell")
    assert opt.objective <= plain.objective + 1e-6


@pytest.mark.parametrize("method", ["auto", "newton", "bfgs"])
@pytest.mark.parametrize("theta0", [[1.0, 0.0], [0.0, 1.0]])
def test_a_start_at_zero_is_left_when_zero_is_a_saddle(method, theta0):
    """Penicillin from a start with one variance exactly 0: the gradient and the model Hessian's row vanish
    there, so only a probe off zero finds that the objective falls; the fit reaches lme4's optimum."""
    ref = load_reference("penicillin", "reml")
    model = sparselmm.LinearMixedModel(ref["formula"], load_data("penicillin", ref))
    opt = optimize(model.problem(), np.array(theta0), method=method)
    assert opt.converged
    assert opt.objective <= ref["objective"] + 1e-6


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
    assert "NOT converged" in str(result.summary())


def test_progress_lines_report_the_iterations(capsys, monkeypatch):
    """progress=True: a line per gradient evaluation, with the objective just evaluated and the
    largest gradient component; None: only for slow evaluations (here made slow by the threshold)."""
    import sparselmm.driver as driver

    f, g = quadratic(CENTER)
    problem = Problem(f, np.array([0.0, -np.inf, 0.0]), g)
    opt = optimize(problem, np.ones(3), method="bfgs", progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == opt.ngrad
    values = {f"{v:.6f}" for _, v in opt.path}
    for line in lines:
        assert line.startswith("sparselmm: iteration ") and "s per iteration" in line
        assert line.split("objective ")[1].split(",")[0] in values
    assert lines[-1].split("|gradient| ")[1].split(",")[0] == f"{np.abs(g(opt.theta)).max():.1e}"
    optimize(problem, np.ones(3), method="bfgs")  # the default, False: quiet
    optimize(problem, np.ones(3), method="bfgs", progress=None)  # fast evaluations: quiet
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(driver, "PROGRESS_AFTER", -1.0)  # every evaluation counts as slow
    optimize(problem, np.ones(3), method="bfgs", progress=None)
    assert capsys.readouterr().err.count("sparselmm: iteration") > 0


def test_newton_stops_after_a_step_its_model_predicts_converged():
    """InstEval: the last Newton step is taken without a gradient after it (a factor's inverse
    saved); the projected gradient there, evaluated on demand, is the gradient's at θ, and a fit that
    evaluates it too (one more iteration allowed by a smaller tolerance) reaches the same optimum."""
    import pickle

    from sparselmm import driver
    from sparselmm.datasets import load_insteval

    model = sparselmm.LinearMixedModel("y ~ service + (1|s) + (1|d) + (1|dept)", load_insteval(), reml=False)
    fit = model.fit()
    opt = fit.optinfo
    assert opt.message.endswith("after a Newton step")
    grads = opt.ngrad
    g = model.backend.gradient(opt.theta)
    assert opt.pgnorm == pytest.approx(np.abs(projected_gradient(opt.theta, g, model.lower)).max(), rel=1e-12)
    assert pickle.loads(pickle.dumps(opt)).pgnorm == opt.pgnorm
    other = sparselmm.LinearMixedModel("y ~ service + (1|s) + (1|d) + (1|dept)", load_insteval(), reml=False)
    before = driver.PREDICTED_FTOL
    try:
        driver.PREDICTED_FTOL = 1e-20  # no shortcut: every step's gradient, to FTOL's stop
        full = other.fit()
    finally:
        driver.PREDICTED_FTOL = before
    assert full.optinfo.ngrad > grads
    assert fit.objective <= full.objective + 1e-9 * abs(full.objective)
    np.testing.assert_allclose(fit.fe_params, full.fe_params, rtol=1e-7)
